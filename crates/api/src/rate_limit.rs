//! Rate limiting at the edge: every call but the probes spends from the
//! caller's budget for its class. Answers carry the IETF draft's
//! `RateLimit-Policy` and `RateLimit` headers; over budget is a 429 problem with
//! `Retry-After`. If the limit store fails, the request is let through (and the
//! failure logged): an outage of the limiter must not become an outage of the API.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::authenticate_once;
use super::problem::ApiError;
use domain::rate_limit::Decision;
use service::{Class, RateCheck, Services};

fn classify(method: &Method, path: &str) -> Class {
    let uploading =
        path.starts_with("/v1/uploads") || (path == "/v1/posts" && method == Method::POST);
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Class::Reads,
        _ if uploading => Class::Uploads,
        _ => Class::Writes,
    }
}

/// The client's address: the peer's, or — when the peer is a trusted proxy — the
/// nearest untrusted address in `X-Forwarded-For`, read from the right.
/// How an anonymous client is keyed (rate limits, idempotency scopes): by its
/// address, and for IPv6 by its /64, since one subscriber is routinely given a
/// whole /64 and could otherwise take a fresh address for every request.
pub fn client_scope(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("client:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("client:{v4}"),
            None => {
                let s = v6.segments();
                format!("client:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    forwarded
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(forwarded.first())
        .copied()
        .unwrap_or(peer)
}

fn headers_for(check: &RateCheck) -> [(&'static str, HeaderValue); 2] {
    let name = check.class.name();
    let policy = format!(
        "\"{name}\";q={};w={}",
        check.budget.limit,
        check.budget.window.as_secs()
    );
    let (remaining, reset) = match check.decision {
        Decision::Allowed { remaining, reset } => (remaining, reset),
        Decision::Limited { retry_after } => (0, retry_after),
    };
    let state = format!(
        "\"{name}\";r={remaining};t={}",
        reset.as_secs_f64().ceil() as u64
    );
    [
        (
            "ratelimit-policy",
            HeaderValue::from_str(&policy).expect("ASCII"),
        ),
        ("ratelimit", HeaderValue::from_str(&state).expect("ASCII")),
    ]
}

pub async fn rate_limit(State(s): State<Services>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if s.settings.rate_limits.is_none()
        || path == "/healthz"
        || path == "/readyz"
        || path == "/metrics"
    {
        return next.run(request).await;
    }
    let class = classify(request.method(), path);
    let principal = authenticate_once(&s, &mut request)
        .await
        .map(|user| format!("user:{}", user.id));
    let principal = principal.unwrap_or_else(|| {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        client_scope(client_ip(
            peer,
            request.headers(),
            &s.settings.trusted_proxies,
        ))
    });
    let check = match s.check_rate(class, &principal).await {
        Ok(Some(check)) => check,
        Ok(None) => return next.run(request).await,
        Err(e) => {
            tracing::error!(error = %e, "rate limiter unavailable; letting the request through");
            return next.run(request).await;
        }
    };
    let headers = headers_for(&check);
    let mut response = match check.decision {
        Decision::Allowed { .. } => next.run(request).await,
        Decision::Limited { retry_after } => {
            let seconds = (retry_after.as_secs_f64().ceil() as u64).max(1);
            metrics::counter!("rate_limit_rejections_total", "class" => check.class.name())
                .increment(1);
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "the {} budget is spent; retry in {seconds} s",
                    check.class.name()
                ),
            );
            e.headers
                .push((header::RETRY_AFTER, HeaderValue::from(seconds)));
            e.into_response()
        }
    };
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4, 10.0.0.2"),
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let outsider: IpAddr = "8.8.8.8".parse().unwrap();
        // Spoofed entries to the left of the first untrusted hop are ignored.
        assert_eq!(
            client_ip(proxy, &h, &trusted),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(outsider, &h, &trusted), outsider);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &trusted), proxy);
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_scope(a), client_scope(b));
        assert_ne!(client_scope(a), client_scope(other));
        assert_eq!(client_scope(a), "client:2001:db8:1:2::/64");
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(client_scope(v4), client_scope(mapped));
        assert_eq!(client_scope(v4), "client:203.0.113.7");
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&Method::GET, "/v1/posts"), Class::Reads);
        assert_eq!(classify(&Method::POST, "/v1/posts"), Class::Uploads);
        assert_eq!(classify(&Method::PATCH, "/v1/uploads/x"), Class::Uploads);
        assert_eq!(
            classify(&Method::POST, "/v1/posts/x/comments"),
            Class::Writes
        );
        assert_eq!(classify(&Method::DELETE, "/v1/posts/x"), Class::Writes);
    }
}
