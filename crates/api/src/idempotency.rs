//! `Idempotency-Key` on every creating POST. The key is claimed atomically in
//! the database before the handler runs; the response is stored when it
//! finishes, and a retry with the same key and request gets that response
//! again (`Idempotent-Replayed: true`). Same key, different request → 422;
//! same key while the first is still running → 409. Keys are scoped to the
//! user (to the client address for anonymous calls) and kept 24 hours.
//!
//! Responses that carry a bearer token (`POST /v1/users`, `POST /v1/sessions`)
//! are stored with the token removed, since tokens are only ever stored as
//! hashes; a replay of one carries a freshly issued token for the same user.
//!
//! The request fingerprint covers the method, path and query, the
//! content type and the body. Multipart bodies and bodies declared over 1 MiB
//! are not buffered: their fingerprint covers the method, path, query and
//! Content-Length, so a different body of the same length under the same key
//! is replayed rather than refused. A chunked body (no Content-Length) is
//! fingerprinted by its bytes (its first MiB, if longer).
//!
//! A claimed request runs to its end even if its client disconnects (writes
//! run in tasks of their own, see `server.rs`), and holds its claim as a lease
//! renewed while it runs; a claim whose node died is taken over once the lease
//! lapses (`CLAIM_LEASE`). Writes that create something record their answer
//! in their own transaction (`key_answer`), so no crash separates the two.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::extract::authenticate_once;
use super::problem::{ApiError, Problem};
use domain::idempotency::{KeyAnswer, KeyClaim, StoredResponse};
use service::{CLAIM_RENEW_EVERY, Services};

const BUFFERED_BODY_MAX: usize = 1024 * 1024;
/// Headers replayed with a stored response (the rest are per-response).
const REPLAYED: &[&str] = &[
    "content-type",
    "location",
    "etag",
    "upload-offset",
    "upload-expires",
    "tus-resumable",
];
/// Request headers that change what a creating call does.
const SIGNIFICANT: &[&str] = &[
    "upload-length",
    "upload-metadata",
    "upload-checksum",
    "content-type",
];

fn key_of(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    // The draft makes the key a structured-field string ("…"); bare keys are accepted too.
    let raw = value.to_str().unwrap_or_default().trim();
    let key = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
        ));
    }
    Ok(Some(key.to_owned()))
}

/// The user, or for anonymous calls the client's address.
async fn scope_of(services: &Services, request: &mut Request) -> String {
    if let Some(user) = authenticate_once(services, request).await {
        return domain::idempotency::user_scope(user.id);
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = peer.map(|p| {
        super::rate_limit::client_ip(
            p.ip(),
            request.headers(),
            &services.settings.trusted_proxies,
        )
    });
    ip.map(super::rate_limit::client_scope)
        .unwrap_or_else(|| "client:".to_owned())
}

/// Hashes the request; returns it with its body intact.
async fn fingerprint(request: Request) -> Result<([u8; 32], Request), ApiError> {
    let (parts, body) = request.into_parts();
    let mut hash = Sha256::new();
    hash.update(parts.method.as_str());
    hash.update([0]);
    hash.update(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/"),
    );
    for name in SIGNIFICANT {
        hash.update([0]);
        let value = parts
            .headers
            .get(*name)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // A multipart boundary is random per request, so only the media type counts.
        let value = if *name == "content-type" {
            value.split(|&b| b == b';').next().unwrap_or_default()
        } else {
            value
        };
        hash.update(value);
    }
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"multipart/"));
    let body = if multipart || length.is_some_and(|n| n > BUFFERED_BODY_MAX) {
        hash.update([2]);
        hash.update(length.unwrap_or(usize::MAX).to_be_bytes());
        body
    } else {
        // Declared small, or chunked (no length): the bytes themselves decide.
        let (prefix, rest) = read_prefix(body, BUFFERED_BODY_MAX).await?;
        hash.update([if rest.is_some() { 3 } else { 1 }]);
        hash.update(&prefix);
        match rest {
            None => Body::from(prefix),
            Some(rest) => {
                let head =
                    futures_util::stream::once(async move { Ok(bytes::Bytes::from(prefix)) });
                Body::from_stream(head.chain(rest.into_data_stream()))
            }
        }
    };
    Ok((hash.finalize().into(), Request::from_parts(parts, body)))
}

/// Reads up to `max` bytes of `body`; the rest, if the body is longer, is
/// returned unread (a chunked body over the bound is fingerprinted by its
/// first `max` bytes and its length is not known in advance).
async fn read_prefix(mut body: Body, max: usize) -> Result<(Vec<u8>, Option<Body>), ApiError> {
    use http_body_util::BodyExt;
    let mut prefix = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(super::extract::body_error)?;
        if let Ok(data) = frame.into_data() {
            prefix.extend_from_slice(&data);
            if prefix.len() > max {
                return Ok((prefix, Some(body)));
            }
        }
    }
    Ok((prefix, None))
}

const PROBLEM: &str = "application/problem+json";

/// Removes a bearer token from a stored body; returns whether there was one.
fn redact_token(body: &mut Vec<u8>) -> bool {
    let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    match json.get_mut("token") {
        Some(token) if token.is_string() => {
            *token = serde_json::Value::String(String::new());
            *body = serde_json::to_vec(&json).unwrap_or_default();
            true
        }
        _ => false,
    }
}

/// Puts a new token for the body's user into a redacted stored body.
async fn reissue_token(services: &Services, body: &[u8]) -> Option<Vec<u8>> {
    let mut json = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    if json.get("token")? != "" {
        return None;
    }
    let user: domain::User = serde_json::from_value(json.get("user")?.clone()).ok()?;
    let session = services.reissue_session(user).await.ok()?;
    json["token"] = serde_json::Value::String(session.token.as_str().to_owned());
    serde_json::to_vec(&json).ok()
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let is_problem = stored
        .headers
        .iter()
        .any(|(n, v)| n == "content-type" && v == PROBLEM);
    let mut response = match serde_json::from_slice::<Problem>(&stored.body) {
        // The edge middleware renders it again, with this request's id.
        Ok(problem) if is_problem => {
            let mut r = status.into_response();
            r.extensions_mut().insert(problem);
            r
        }
        _ => (status, stored.body).into_response(),
    };
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(n, v);
        }
    }
    response
        .headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

/// Forgets the claim if the request never finishes (client gone, panic).
struct ClaimGuard {
    services: Services,
    scope_key: Option<String>,
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let Some(key) = self.scope_key.take() {
            let services = self.services.clone();
            tokio::spawn(async move {
                let _ = services.release_idempotency_key(&key).await;
            });
        }
    }
}

pub async fn idempotency(
    State(services): State<Services>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let key = match key_of(request.headers()) {
        Ok(Some(k)) => k,
        Ok(None) => return next.run(request).await,
        Err(e) => return e.into_response(),
    };
    let scope_key = format!("{} {key}", scope_of(&services, &mut request).await);
    let (fp, request) = match fingerprint(request).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    match services.claim_idempotency_key(&scope_key, &fp).await {
        Ok(KeyClaim::Claimed) => {}
        Ok(KeyClaim::Replay(mut stored)) => {
            if let Some(body) = reissue_token(&services, &stored.body).await {
                stored.body = body;
            }
            return replay(stored);
        }
        Ok(KeyClaim::InFlight) => {
            let mut e = ApiError::new(
                StatusCode::CONFLICT,
                "idempotency-in-flight",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later",
            );
            e.headers
                .push((header::RETRY_AFTER, HeaderValue::from_static("1")));
            return e.into_response();
        }
        Ok(KeyClaim::Mismatch) => {
            return ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was already used for a different request",
            )
            .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    }
    // A client that leaves changes nothing: writes run to their end in a task
    // of their own (see `server::run_to_completion`), so the outcome is stored
    // and the retry gets it.
    run_claimed(services, scope_key, request, next).await
}

/// The claim a keyed request holds, for handlers whose write records its
/// answer itself (in the write's transaction).
#[derive(Clone)]
pub struct Claim(String);

/// The answer recorder for a write under `claim`, if the request has one.
pub fn key_answer<T: 'static>(
    claim: Option<axum::Extension<Claim>>,
    render: fn(&T) -> StoredResponse,
) -> Option<KeyAnswer<T>> {
    claim.map(|axum::Extension(Claim(scope_key))| KeyAnswer::new(scope_key, render))
}

/// A JSON answer as the client gets it now and as a retry will get it again.
pub fn json_answer(
    status: StatusCode,
    location: Option<String>,
    body: &impl serde::Serialize,
) -> StoredResponse {
    let mut headers = vec![("content-type".into(), "application/json".into())];
    headers.extend(location.map(|l| ("location".to_owned(), l)));
    StoredResponse {
        status: status.as_u16(),
        headers,
        body: serde_json::to_vec(body).expect("views serialise"),
    }
}

/// Marks a response whose answer the write already recorded under the
/// request's key (`key_answer`), so the middleware does not write it again.
#[derive(Clone, Copy)]
struct AnswerRecorded;

/// The live response for an answer built by `json_answer`; `recorded` says
/// the write stored it under the request's key (the handler's `key_answer`
/// was `Some`).
pub fn recorded_answer(stored: StoredResponse, recorded: bool) -> Response {
    let mut response = answer_response(stored);
    if recorded {
        response.extensions_mut().insert(AnswerRecorded);
    }
    response
}

/// The live response for an answer built by `json_answer`.
fn answer_response(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    for (name, value) in stored.headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            response.headers_mut().insert(n, v);
        }
    }
    response
}

async fn run_claimed(
    services: Services,
    scope_key: String,
    mut request: Request,
    next: Next,
) -> Response {
    request.extensions_mut().insert(Claim(scope_key.clone()));
    let mut guard = ClaimGuard {
        services: services.clone(),
        scope_key: Some(scope_key.clone()),
    };
    let run = next.run(request);
    tokio::pin!(run);
    let mut renew = tokio::time::interval(CLAIM_RENEW_EVERY);
    renew.tick().await;
    let response = loop {
        tokio::select! {
            response = &mut run => break response,
            _ = renew.tick() => {
                if let Err(e) = services.renew_idempotency_key(&scope_key).await {
                    tracing::warn!(error = %e, "renewing an Idempotency-Key claim");
                }
            }
        }
    };
    // Server errors and "try again" answers are not remembered: the retry should run again.
    let status = response.status();
    if status.is_server_error()
        || status == StatusCode::CONFLICT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        return response;
    }
    if response.extensions().get::<AnswerRecorded>().is_some() {
        guard.scope_key = None; // stored by the write, in its transaction
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BUFFERED_BODY_MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    // Problems are rendered by the edge middleware further out; replay the same status and detail.
    let mut headers: Vec<(String, String)> = REPLAYED
        .iter()
        .filter_map(|n| {
            parts
                .headers
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .map(|v| ((*n).to_owned(), v.to_owned()))
        })
        .collect();
    let mut stored_body = bytes.to_vec();
    redact_token(&mut stored_body);
    if let Some(problem) = parts.extensions.get::<Problem>() {
        stored_body = serde_json::to_vec(problem).unwrap_or_default();
        headers.retain(|(n, _)| n != "content-type");
        headers.push(("content-type".into(), PROBLEM.into()));
    }
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: stored_body,
    };
    if let Err(e) = services.complete_idempotency_key(&scope_key, &stored).await {
        tracing::error!(error = %e, "storing an idempotent response; the key is released instead");
        return Response::from_parts(parts, Body::from(bytes));
    }
    guard.scope_key = None;
    Response::from_parts(parts, Body::from(bytes))
}
