//! The API under attack: what one node's memory and feed latency do while
//! hostile clients hammer it (figures in BENCHMARKS.md, "Hostile clients").
//!
//! cargo build --release && cargo run --release --example hostile -- [SECONDS]
//!
//! Starts `target/release/imagegram serve` (idle timeout 5 s), measures the feed's
//! latency alone, then again while, at once: endless chunked JSON bodies stream at
//! every JSON route, 200 connections stall mid-body (reopened as they are cut),
//! requests with invented methods pour in, 100 users hold 8 event streams each and
//! keep asking for more, and 64 clients flood sign-ins with wrong passwords. It
//! prints the answers each attack got, the server's peak RSS, and the feed's p99.

#[path = "support/server.rs"]
mod server;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use server::{memory_kib, start_server};
use support::{register, report};

type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

fn count(tally: &Tally, what: String) {
    *tally.lock().unwrap().entry(what).or_default() += 1;
}

async fn feed_latencies(client: &reqwest::Client, base: &str, until: Instant) -> Vec<Duration> {
    let mut samples = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let resp = client.get(format!("{base}/v1/posts?limit=20")).send().await;
        if resp.map(|r| r.status() == 200).unwrap_or(false) {
            samples.push(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    samples
}

async fn endless_bodies(base: String, token: String, post: String, until: Instant, tally: Tally) {
    let client = reqwest::Client::new();
    let routes = [
        "/v1/users".to_owned(),
        "/v1/sessions".to_owned(),
        "/v1/posts".to_owned(),
        format!("/v1/posts/{post}/comments"),
    ];
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let chunks = futures_util::stream::iter(0..)
            .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[b' '; 64 * 1024])));
        let status = client
            .post(format!("{base}{}", routes[n % routes.len()]))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .map(|r| r.status().as_u16().to_string())
            .unwrap_or_else(|_| "cut".into());
        count(&tally, format!("endless body → {status}"));
    }
}

async fn stalled_body(addr: String, token: String, until: Instant, tally: Tally) {
    while Instant::now() < until {
        let Ok(mut conn) = TcpStream::connect(&addr).await else {
            count(&tally, "stalled body → connect failed".into());
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let head = format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"username\""
        );
        let _ = conn.write_all(head.as_bytes()).await;
        let mut buf = [0u8; 512];
        let answer = match tokio::time::timeout(Duration::from_secs(60), conn.read(&mut buf)).await
        {
            Ok(Ok(0)) => "closed".to_owned(),
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
                .split(' ')
                .nth(1)
                .unwrap_or("?")
                .to_owned(),
            Ok(Err(_)) => "reset".to_owned(),
            Err(_) => "still open after 60 s".to_owned(),
        };
        count(&tally, format!("stalled body → {answer}"));
    }
}

async fn invented_methods(addr: String, until: Instant, tally: Tally) {
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let Ok(mut conn) = TcpStream::connect(&addr).await else {
            continue;
        };
        let request = format!("X{n} /v1/posts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let _ = conn.write_all(request.as_bytes()).await;
        let mut buf = [0u8; 64];
        let status = match conn.read(&mut buf).await {
            Ok(n) if n > 12 => String::from_utf8_lossy(&buf[9..12]).into_owned(),
            _ => "closed".into(),
        };
        count(&tally, format!("invented method → {status}"));
    }
}

async fn event_streams(base: String, tokens: Vec<String>, until: Instant, tally: Tally) {
    let client = reqwest::Client::new();
    let mut open = Vec::new();
    while Instant::now() < until {
        for token in &tokens {
            match client
                .get(format!("{base}/v1/events"))
                .bearer_auth(token)
                .send()
                .await
            {
                Ok(r) if r.status() == 200 => {
                    count(&tally, "event stream → 200 (held open)".into());
                    open.push(r);
                }
                Ok(r) => count(&tally, format!("event stream → {}", r.status().as_u16())),
                Err(_) => count(&tally, "event stream → error".into()),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn sign_in_flood(base: String, until: Instant, tally: Tally) {
    let client = reqwest::Client::new();
    while Instant::now() < until {
        let status = client
            .post(format!("{base}/v1/sessions"))
            .json(&json!({"username": "victim", "password": "not the password"}))
            .send()
            .await
            .map(|r| r.status().as_u16().to_string())
            .unwrap_or_else(|_| "error".into());
        count(&tally, format!("sign-in flood → {status}"));
    }
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start_server(
        &dir.path().join("data"),
        &["--idle-timeout-secs", "5", "--workers", "1"],
    )
    .await;
    let pid = server.id().unwrap();
    let addr = base.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    let token = register(&client, &base, "victim").await;
    let image = tiny_png();
    let form = reqwest::multipart::Form::new()
        .text("caption", "under attack")
        .part(
            "image",
            reqwest::multipart::Part::bytes(image).file_name("a.png"),
        );
    let post: serde_json::Value = client
        .post(format!("{base}/v1/posts"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let post = post["id"].as_str().unwrap().to_owned();
    let mut streamers = Vec::new();
    for n in 0..100 {
        streamers.push(register(&client, &base, &format!("tab_hoarder_{n}")).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let quiet = feed_latencies(
        &client,
        &base,
        Instant::now() + Duration::from_secs(seconds / 2),
    )
    .await;
    let rss_before = memory_kib(pid, "VmRSS:");
    let until = Instant::now() + Duration::from_secs(seconds);
    let tally: Tally = Arc::default();
    let mut attacks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        attacks.spawn(endless_bodies(
            base.clone(),
            token.clone(),
            post.clone(),
            until,
            tally.clone(),
        ));
    }
    for _ in 0..200 {
        attacks.spawn(stalled_body(
            addr.clone(),
            token.clone(),
            until,
            tally.clone(),
        ));
    }
    for _ in 0..4 {
        attacks.spawn(invented_methods(addr.clone(), until, tally.clone()));
    }
    attacks.spawn(event_streams(
        base.clone(),
        streamers.clone(),
        until,
        tally.clone(),
    ));
    for _ in 0..64 {
        attacks.spawn(sign_in_flood(base.clone(), until, tally.clone()));
    }
    let attacked = feed_latencies(&client, &base, until).await;
    let rss_peak = memory_kib(pid, "VmHWM:");
    let rss_end = memory_kib(pid, "VmRSS:");
    attacks.abort_all();

    println!("attack of {seconds} s on one node (idle timeout 5 s):");
    for (what, n) in tally.lock().unwrap().iter() {
        println!("  {what:<44} {n}");
    }
    println!(
        "server RSS: {} MiB before, {} MiB at the end, peak {} MiB",
        rss_before / 1024,
        rss_end / 1024,
        rss_peak / 1024
    );
    report("feed reads, quiet", quiet);
    report("feed reads, under attack", attacked);
}

fn tiny_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
