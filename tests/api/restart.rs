//! Jobs survive a crash: kill -9 the real binary mid-job, start it again, the post becomes ready.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{backend_urls, jpeg};

struct Node {
    child: Child,
    base: String,
}

fn start(data_dir: &std::path::Path, backend: &[String], extra: &[&str]) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagegram"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--job-lease-secs",
            "2",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(backend)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("imagegram listening on ")
        .expect("listening line")
        .to_owned();
    Node { child, base }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_job_interrupted_by_a_crash_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let backend: Vec<String> = match backend_urls().await {
        Some((db, blobs)) => vec!["--database-url".into(), db, "--blob-url".into(), blobs],
        None => Vec::new(),
    };
    let client = reqwest::Client::new();
    // The first process holds every job for a minute after claiming it, so it is surely mid-job when killed.
    let mut node = start(dir.path(), &backend, &["--debug-job-delay-ms", "60000"]);
    let reg: Value = client
        .post(format!("{}/v1/users", node.base))
        .json(&serde_json::json!({"username": "survivor", "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reg["token"].as_str().unwrap().to_owned();
    let form = reqwest::multipart::Form::new()
        .text("caption", "crash test")
        .part(
            "image",
            reqwest::multipart::Part::bytes(jpeg(200, 100)).file_name("a.jpg"),
        );
    let resp = client
        .post(format!("{}/v1/posts", node.base))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let post: Value = resp.json().await.unwrap();
    let id = post["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    node.child.wait().unwrap();

    let node = start(dir.path(), &backend, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let post: Value = client
            .get(format!("{}/v1/posts/{id}", node.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if post["status"] == "ready" {
            assert_eq!(post["image"]["width"], 600);
            break;
        }
        assert_eq!(post["status"], "processing", "{post}");
        assert!(std::time::Instant::now() < deadline, "the job was lost");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
