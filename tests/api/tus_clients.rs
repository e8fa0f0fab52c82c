//! Real tus clients — tuspy (Python) and tus-js-client (Node) — uploading
//! through a proxy that resets connections, adds latency, caps bandwidth and
//! stalls. Every upload must finish with the stored original byte-identical.
//! The clients are installed by `scripts/test-tools` (run by `scripts/test`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use fault_proxy::{FaultProxy, Faults};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::TestApp;

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools")
}

/// A large, incompressible PNG: random noise survives no shortcut.
pub fn noisy_png(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let img = image::RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

enum Client {
    Tuspy,
    TusJs,
}

impl Client {
    fn command(&self) -> Option<tokio::process::Command> {
        if !tools().join("ready").exists() {
            return None;
        }
        let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
        match self {
            Client::Tuspy => {
                let python = tools().join("venv/bin/python");
                python.exists().then(|| {
                    let mut c = tokio::process::Command::new(python);
                    c.arg(clients.join("tuspy_upload.py"));
                    c
                })
            }
            Client::TusJs => {
                let module = tools().join("node/node_modules");
                module.join("tus-js-client").exists().then(|| {
                    let mut c = tokio::process::Command::new("node");
                    c.env("TUS_JS_CLIENT_DIR", &module)
                        .arg(clients.join("tusjs_upload.mjs"));
                    c
                })
            }
        }
    }
}

/// The client's command, or None (and a note) where it is not installed;
/// CI must have it.
fn installed(client: Client, name: &str) -> Option<tokio::process::Command> {
    let command = client.command();
    if command.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs the tus clients: run scripts/test-tools"
        );
        eprintln!("SKIPPED: {name} is not installed (run scripts/test-tools)");
    }
    command
}

/// Uploads `file` through `proxy` with the client, in `chunk`-byte PATCHes;
/// returns the upload's URL.
async fn run_client(
    mut command: tokio::process::Command,
    name: &str,
    proxy: &FaultProxy,
    token: &str,
    file: &Path,
    chunk: usize,
) -> String {
    command
        .arg(format!("http://{}/v1/uploads", proxy.addr()))
        .arg(token)
        .arg(file)
        .arg(chunk.to_string());
    let out = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the upload finished in time")
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn upload_through_faults(client: Client, name: &str) {
    let Some(command) = installed(client, name) else {
        return;
    };
    let app = TestApp::spawn().await;
    let token = app.register(name).await;
    let image = noisy_png(1600, 1200); // about 5.8 MB
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("photo.png");
    std::fs::write(&file, &image).unwrap();
    let upstream = app.base.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(
        upstream,
        Faults {
            reset_after: Some(1_500_000),
            latency: Duration::from_millis(2),
            upload_bytes_per_sec: Some(64 << 20),
            stall: Some((2_000_000, Duration::from_millis(1500))),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let url = run_client(command, name, &proxy, &token, &file, 4 << 20).await;
    assert!(
        proxy.resets() >= 3,
        "the proxy really cut the connection ({} resets)",
        proxy.resets()
    );
    let upload_id = url.rsplit('/').next().unwrap().to_owned();
    let post: Value = app
        .post_json(
            "/v1/posts",
            Some(&token),
            json!({"upload_id": upload_id, "caption": name}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = post["id"].as_str().expect("a post from the upload");
    let stored = app.blob(&format!("originals/{id}")).await.unwrap();
    assert_eq!(
        Sha256::digest(&stored),
        Sha256::digest(&image),
        "byte-identical original"
    );
    app.wait_for_status(&token, id, "ready").await;
}

#[tokio::test]
async fn tuspy_resumes_through_a_bad_network() {
    upload_through_faults(Client::Tuspy, "tuspy_user").await;
}

#[tokio::test]
async fn tus_js_client_resumes_through_a_bad_network() {
    upload_through_faults(Client::TusJs, "tusjs_user").await;
}

/// PRODUCT.md §3 Uploads: a 100 MiB upload through a link that goes silent
/// (no FIN, no RST towards the server) every 10 MiB finishes with at most 5%
/// of its bytes sent twice, and the clients never wait on the server: no
/// 409 "in progress" and no 423, only their own retry delays.
async fn upload_through_silent_drops(client: Client, name: &str) {
    let Some(command) = installed(client, name) else {
        return;
    };
    const MIB: usize = 1 << 20;
    // The idle timeout is long: only the takeover may free the upload.
    let app = TestApp::spawn_with(|a| a.idle_timeout_secs = Some(300)).await;
    let token = app.register(name).await;
    let bytes = crate::faults::noise(100 * MIB, 0x5eed);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let proxy = FaultProxy::start(
        app.base.trim_start_matches("http://").parse().unwrap(),
        Faults {
            silent_drop_after: Some(10 * MIB as u64),
            ..Faults::default()
        },
    )
    .await
    .unwrap();
    let url = run_client(command, name, &proxy, &token, &file, 100 * MIB).await;
    assert!(
        proxy.silent_drops() >= 9,
        "{} silent drops",
        proxy.silent_drops()
    );
    let resent = proxy.bytes_to_server() as f64 / bytes.len() as f64 - 1.0;
    eprintln!(
        "{name}: {} silent drops, {:.2}% of the bytes sent again",
        proxy.silent_drops(),
        resent * 100.0
    );
    assert!(
        resent <= 0.05,
        "{:.2}% of the bytes were sent twice",
        resent * 100.0
    );
    assert_eq!(
        proxy.responses_with_status(409),
        0,
        "a client was told to wait"
    );
    assert_eq!(
        proxy.responses_with_status(423),
        0,
        "a client was told to wait"
    );
    let location = format!("/v1/uploads/{}", url.rsplit('/').next().unwrap());
    let held = app.upload_bytes(&location).await;
    assert_eq!(held.len(), bytes.len());
    assert!(
        Sha256::digest(&held) == Sha256::digest(&bytes),
        "every byte once"
    );
}

#[tokio::test]
async fn tuspy_finishes_100_mib_through_silent_drops() {
    upload_through_silent_drops(Client::Tuspy, "tuspy_silent").await;
}

#[tokio::test]
async fn tus_js_client_finishes_100_mib_through_silent_drops() {
    upload_through_silent_drops(Client::TusJs, "tusjs_silent").await;
}
