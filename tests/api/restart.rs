//! Jobs survive a crash: kill -9 the real binary mid-job, start it again, the post becomes ready.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Node, backend_args, jpeg};

#[tokio::test]
async fn a_job_interrupted_by_a_crash_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let client = reqwest::Client::new();
    // The first process holds every job for a minute after claiming it, so it is surely mid-job when killed.
    let mut node = Node::serve(
        dir.path(),
        &backend,
        &[
            "--workers",
            "1",
            "--job-lease-secs",
            "2",
            "--debug-job-delay-ms",
            "60000",
        ],
    );
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
    node.kill(); // SIGKILL: no cleanup of any kind

    let node = Node::serve(
        dir.path(),
        &backend,
        &["--workers", "1", "--job-lease-secs", "2"],
    );
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
