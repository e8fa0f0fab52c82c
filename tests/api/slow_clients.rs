//! Slowloris: connections that send nothing are dropped after the idle
//! timeout; an upload that keeps sending, however slowly, is not.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

/// Waits until the server closes `conn`; returns how long that took.
async fn closed_after(conn: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue, // e.g. a 408 response before the close
            Err(_) => panic!("the server kept an idle connection open for 10 s"),
        }
    }
}

#[tokio::test]
async fn idle_and_half_sent_connections_are_dropped() {
    let app = TestApp::spawn_with(|a| a.idle_timeout_secs = Some(1)).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut trickle = TcpStream::connect(&addr).await.unwrap();
    trickle
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (a, b) = tokio::join!(closed_after(&mut silent), closed_after(&mut trickle));
    assert!(
        a < Duration::from_secs(5) && b < Duration::from_secs(5),
        "{a:?} {b:?}"
    );
    // The server is still fine for everyone else.
    assert_eq!(app.get("/healthz", None).await.status(), 200);
}

#[tokio::test]
async fn slow_but_progressing_uploads_finish() {
    let app = TestApp::spawn_with(|a| a.idle_timeout_secs = Some(1)).await;
    let token = app.register("snail").await;
    let created = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "16")
        .send()
        .await
        .unwrap();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: 16\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // 16 bytes over about 4 s, well past the 1 s idle timeout in total, never idle for 1 s.
    for byte in b"slow and steady!" {
        conn.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut response = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut response))
        .await
        .unwrap()
        .unwrap();
    let response = String::from_utf8_lossy(&response[..n]).to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 204"), "{response}");
    assert!(response.contains("upload-offset: 16"), "{response}");
}
