//! Hostile clients: endless and stalled bodies, invented methods, connection
//! floods, sign-in floods, piles of event streams and control characters. Each
//! gets a clean 4xx (or 503) or a closed connection, and the API keeps answering.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, error_fields, problem};

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads what the server answers until it closes the connection; None if it
/// kept it open for `limit`.
async fn answer_then_close(conn: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Every JSON route, as (method, path); `{post}` is replaced by a real post.
const JSON_ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/users"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/posts"),
    ("PATCH", "/v1/posts/{post}"),
    ("POST", "/v1/posts/{post}/comments"),
];

#[tokio::test]
async fn stalled_bodies_are_cut_after_the_idle_timeout_on_every_json_route() {
    let app = TestApp::spawn_with(|a| a.idle_timeout_secs = Some(1)).await;
    let token = app.register("staller").await;
    let post = app.ready_post(&token, "target").await;
    let post_id = post["id"].as_str().unwrap();
    let mut conns = Vec::new();
    for round in 0..10 {
        for (method, path) in JSON_ROUTES {
            let path = path.replace("{post}", post_id);
            let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"body\": \"r{round}"
            );
            conn.write_all(head.as_bytes()).await.unwrap();
            conns.push(conn);
        }
    }
    let started = Instant::now();
    for conn in &mut conns {
        let answer = answer_then_close(conn, Duration::from_secs(10))
            .await
            .expect("a stalled body is cut off, not kept open");
        assert!(
            answer.is_empty() || status_of(&answer) == 408,
            "a 408 (or a plain close): {answer}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // Nothing half-sent was written.
    let comments = app
        .get_json(&format!("/v1/posts/{post_id}/comments"), None)
        .await;
    assert_eq!(comments["items"].as_array().unwrap().len(), 0);
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

#[tokio::test]
async fn json_bodies_over_64_kib_are_refused_declared_or_streamed() {
    let app = TestApp::spawn().await;
    let token = app.register("firehose").await;
    let post = app.ready_post(&token, "target").await;
    let post_id = post["id"].as_str().unwrap();
    for (method, path) in JSON_ROUTES {
        let path = path.replace("{post}", post_id);
        // Declared too large: refused before a byte of the body is read.
        let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1500000000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let answer = answer_then_close(&mut conn, Duration::from_secs(10))
            .await
            .expect("answered and closed");
        assert_eq!(status_of(&answer), 413, "{method} {path}: {answer}");
        assert!(answer.contains("application/problem+json"), "{answer}");

        // Chunked and endless: refused once it passes the bound.
        let endless = futures_util::stream::iter(0..)
            .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[b' '; 16 * 1024])));
        let resp = app
            .client
            .request(method.parse().unwrap(), app.url(&path))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(endless.take(100_000)))
            .send()
            .await;
        // The server answers 413 as soon as the bound is passed; the client may
        // see the answer, or its upload cut short by the close that follows.
        if let Ok(resp) = resp {
            problem(resp, 413).await;
        }
    }
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

/// Sends `count` requests with invented methods, each answered 405.
async fn invent_methods(app: &TestApp, from: usize, count: usize) {
    for n in from..from + count {
        let mut conn = TcpStream::connect(addr(app)).await.unwrap();
        let request = format!("BREW{n} /v1/posts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let answer = answer_then_close(&mut conn, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status_of(&answer), 405, "{answer}");
    }
}

#[tokio::test]
async fn invented_methods_do_not_grow_the_metrics() {
    let app = TestApp::spawn_with(|a| a.rate_limit = Some(imagegram::config::OnOff::Off)).await;
    let other_series = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains("method=\"other\""))
            .count()
    };
    invent_methods(&app, 0, 10).await;
    let before = app.get("/metrics", None).await.text().await.unwrap();
    invent_methods(&app, 10, 300).await;
    let after = app.get("/metrics", None).await.text().await.unwrap();
    assert!(!after.contains("BREW"), "methods are a closed label set");
    assert!(other_series(&before) > 0, "{before}");
    assert_eq!(
        other_series(&after),
        other_series(&before),
        "300 more invented methods added no series"
    );
}

#[tokio::test]
async fn control_characters_are_refused_with_the_field_named() {
    let app = TestApp::spawn().await;
    let token = app.register("typist").await;
    let post = app.ready_post(&token, "plain").await;
    let post_id = post["id"].as_str().unwrap();
    for bad in ["nul\0byte", "bell\u{7}", "escape\u{1b}[2J", "lone\rreturn"] {
        let resp = app.comment(&token, post_id, bad).await;
        assert_eq!(error_fields(&problem(resp, 422).await), ["body"], "{bad:?}");
        let resp = app
            .upload(
                &token,
                &[("caption", bad)],
                Some(crate::helpers::jpeg(8, 8)),
            )
            .await;
        assert_eq!(
            error_fields(&problem(resp, 422).await),
            ["caption"],
            "{bad:?}"
        );
        let resp = app
            .client
            .patch(app.url(&format!("/v1/posts/{post_id}")))
            .bearer_auth(&token)
            .json(&json!({"caption": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_fields(&problem(resp, 422).await),
            ["caption"],
            "{bad:?}"
        );
        let resp = app
            .post_json(
                "/v1/users",
                None,
                json!({"username": "someone_new", "password": format!("long enough {bad}")}),
            )
            .await;
        assert_eq!(
            error_fields(&problem(resp, 422).await),
            ["password"],
            "{bad:?}"
        );
    }
    // Newlines and tabs are text; CR LF is a newline.
    let resp = app
        .comment(&token, post_id, "two\tcolumns\r\nand lines\n")
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let comment: Value = resp.json().await.unwrap();
    assert_eq!(comment["body"], "two\tcolumns\nand lines\n");
}

#[tokio::test]
async fn connections_past_the_cap_get_a_clean_503() {
    let app = TestApp::spawn_with(|a| {
        a.max_connections = Some(8);
        a.idle_timeout_secs = Some(30);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut conn = TcpStream::connect(addr(&app)).await.unwrap();
        // A request answered keeps the connection open (keep-alive), holding its place.
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(conn);
    }
    let mut extra = TcpStream::connect(addr(&app)).await.unwrap();
    let answer = answer_then_close(&mut extra, Duration::from_secs(5))
        .await
        .expect("refused and closed");
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["status"], 503);
    // A place freed is a place taken again.
    held.pop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

#[tokio::test]
async fn event_streams_are_capped_per_user() {
    let app = TestApp::spawn().await;
    let token = app.register("many_tabs").await;
    let other = app.register("one_tab").await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let resp = app.get("/v1/events", Some(&token)).await;
        assert_eq!(resp.status(), 200);
        open.push(resp);
    }
    problem(app.get("/v1/events", Some(&token)).await, 429).await;
    // Others are not affected, and a closed stream frees its place.
    assert_eq!(app.get("/v1/events", Some(&other)).await.status(), 200);
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = app.get("/v1/events", Some(&token)).await;
        if resp.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's place came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_sign_in_flood_gets_503s_not_a_queue() {
    let app = TestApp::spawn_with(|a| a.rate_limit = Some(imagegram::config::OnOff::Off)).await;
    app.register("flooded").await;
    let attempts = (0..200).map(|_| {
        let client = app.client.clone();
        let url = app.url("/v1/sessions");
        async move {
            let resp = client
                .post(url)
                .json(&json!({"username": "flooded", "password": "wrong password"}))
                .send()
                .await
                .unwrap();
            let retry = resp.headers().contains_key("retry-after");
            (resp.status().as_u16(), retry)
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    assert!(
        results
            .iter()
            .all(|(s, retry)| *s == 401 || (*s == 503 && *retry)),
        "{results:?}"
    );
    assert!(
        results.iter().any(|(s, _)| *s == 503),
        "200 simultaneous sign-ins overflow the hashing queue"
    );
    // The rest of the API is unaffected.
    assert_eq!(app.get("/v1/posts", None).await.status(), 200);
}
