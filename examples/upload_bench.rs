//! Upload benchmarks (figures in BENCHMARKS.md).
//!
//! cargo build --release && ./scripts/test-tools
//! cargo run --release --example upload_bench -- resume   # 100 MiB, connection reset every 10 MiB
//! cargo run --release --example upload_bench -- memory   # server RSS with 50 concurrent 100 MiB uploads
//!
//! `resume` runs the real tus clients (tuspy, tus-js-client) through the fault
//! proxy (no faults; a reset every 10 MiB; a silent drop every 10 MiB) and
//! reports the bytes sent beyond the file's size. `memory` starts
//! `target/release/imagegram serve` as its own process, streams 50 uploads of
//! 100 MiB at once (multipart, then tus PATCH), and samples the server's RSS.

use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Faults};
use futures_util::stream;

#[path = "support/server.rs"]
mod server;
mod support;

use server::{memory_kib, root, start_server};
use support::register;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 100 * MIB;

async fn resume() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_server(&dir.path().join("data"), &["--workers", "0"]).await;
    let client = reqwest::Client::new();
    let file = dir.path().join("upload.bin");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&file, &data).unwrap();
    let tools = root().join(".tools");
    let clients = root().join("tests/clients");
    // "reset": the client's connection is reset and the server sees it end;
    // "silent": the client's is reset and the server's goes quiet (no FIN, no
    // RST), as when a phone loses coverage.
    for (name, fault) in [
        ("tuspy", "none"),
        ("tuspy", "reset"),
        ("tuspy", "silent"),
        ("tus-js-client", "none"),
        ("tus-js-client", "reset"),
        ("tus-js-client", "silent"),
    ] {
        let token = register(
            &client,
            &base,
            &format!("bench_{}_{fault}", name.replace('-', "_")),
        )
        .await;
        let upstream = base.trim_start_matches("http://").parse().unwrap();
        let faults = Faults {
            reset_after: (fault == "reset").then_some(10 * MIB),
            silent_drop_after: (fault == "silent").then_some(10 * MIB),
            ..Faults::default()
        };
        let proxy = FaultProxy::start(upstream, faults).await.unwrap();
        let endpoint = format!("http://{}/v1/uploads", proxy.addr());
        let mut command = if name == "tuspy" {
            let mut c = tokio::process::Command::new(tools.join("venv/bin/python"));
            c.arg(clients.join("tuspy_upload.py"));
            c
        } else {
            let mut c = tokio::process::Command::new("node");
            c.env("TUS_JS_CLIENT_DIR", tools.join("node/node_modules"))
                .arg(clients.join("tusjs_upload.mjs"));
            c
        };
        command
            .arg(&endpoint)
            .arg(&token)
            .arg(&file)
            .arg((32 * MIB).to_string());
        let started = Instant::now();
        let out = command.output().await.unwrap();
        let took = started.elapsed();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent = proxy.bytes_to_server();
        println!(
            "{name:<14} {fault:<6} cuts={:<3} sent={:>10} B  beyond the file: {:>8} B ({:.3}%)  time {:.2?}",
            proxy.resets(),
            sent,
            sent.saturating_sub(SIZE),
            (sent.saturating_sub(SIZE)) as f64 * 100.0 / SIZE as f64,
            took
        );
    }
}

/// A 100 MiB body generated on the fly, so the client holds almost nothing.
fn body_stream(prefix: &'static [u8]) -> reqwest::Body {
    let chunk = bytes::Bytes::from(vec![0x5Au8; 64 * 1024]);
    let rest_len = SIZE as usize - prefix.len();
    let (count, tail) = (rest_len / chunk.len(), rest_len % chunk.len());
    let pieces = std::iter::once(bytes::Bytes::from_static(prefix))
        .chain((0..count).map(move |_| chunk.clone()))
        .chain(std::iter::once(bytes::Bytes::from(vec![0x5Au8; tail])));
    reqwest::Body::wrap_stream(stream::iter(pieces.map(Ok::<_, std::io::Error>)))
}

async fn memory() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start_server(&dir.path().join("data"), &["--workers", "0"]).await;
    let pid = server.id().unwrap();
    let client = reqwest::Client::new();
    let token = register(&client, &base, "bench_memory").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = memory_kib(pid, "VmRSS:");
    for kind in ["multipart POST /v1/posts", "tus PATCH /v1/uploads/{id}"] {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
        let sampled = peak.clone();
        let sampling = tokio::spawn(async move {
            loop {
                sampled.fetch_max(
                    memory_kib(pid, "VmRSS:"),
                    std::sync::atomic::Ordering::Relaxed,
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let started = Instant::now();
        let mut uploads = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            let multipart = kind.starts_with("multipart");
            uploads.spawn(async move {
                if multipart {
                    let part = reqwest::multipart::Part::stream_with_length(
                        body_stream(b"\x89PNG\r\n\x1a\n"),
                        SIZE,
                    )
                    .file_name("big.png");
                    let form = reqwest::multipart::Form::new().part("image", part);
                    let r = client
                        .post(format!("{base}/v1/posts"))
                        .bearer_auth(&token)
                        .multipart(form)
                        .send()
                        .await;
                    r.map(|r| r.status().as_u16()).unwrap_or_else(|e| {
                        eprintln!("upload failed: {e:?}");
                        0
                    })
                } else {
                    let created = client
                        .post(format!("{base}/v1/uploads"))
                        .bearer_auth(&token)
                        .header("tus-resumable", "1.0.0")
                        .header("upload-length", SIZE.to_string())
                        .send()
                        .await
                        .unwrap();
                    let location = created.headers()["location"].to_str().unwrap().to_owned();
                    let r = client
                        .patch(format!("{base}{location}"))
                        .bearer_auth(&token)
                        .header("tus-resumable", "1.0.0")
                        .header("content-type", "application/offset+octet-stream")
                        .header("upload-offset", "0")
                        .header("content-length", SIZE.to_string())
                        .body(body_stream(b""))
                        .send()
                        .await;
                    r.map(|r| r.status().as_u16()).unwrap_or(0)
                }
            });
        }
        let statuses = uploads.join_all().await;
        let took = started.elapsed();
        sampling.abort();
        let hwm = peak.load(std::sync::atomic::Ordering::Relaxed);
        let mut counts = std::collections::BTreeMap::new();
        for s in statuses {
            *counts.entry(s).or_insert(0) += 1;
        }
        println!(
            "{kind:<28} 50 x 100 MiB in {took:.1?}: statuses {counts:?}; RSS baseline {} MiB, peak {} MiB, increase {} MiB",
            baseline / 1024,
            hwm / 1024,
            hwm.saturating_sub(baseline) / 1024
        );
    }
}

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("resume") => resume().await,
        Some("memory") => memory().await,
        _ => eprintln!("usage: upload_bench resume|memory"),
    }
}
