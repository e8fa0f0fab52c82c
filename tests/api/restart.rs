//! Jobs survive a crash: kill -9 the real binary mid-job, start it again, the post becomes ready.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Node, backend_args, jpeg, register_at};

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
    let token = register_at(&node.base, "survivor").await;
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

/// Bytes an upload acknowledged survive kill -9; the upload resumes on the restarted server.
#[tokio::test]
async fn acknowledged_upload_bytes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let client = reqwest::Client::new();
    let mut node = Node::serve(dir.path(), &backend, &["--workers", "1"]);
    let token = register_at(&node.base, "durable").await;
    let image = jpeg(500, 400);
    let half = image.len() / 2;
    let tus = |method: reqwest::Method, url: String| {
        client
            .request(method, url)
            .bearer_auth(&token)
            .header("tus-resumable", "1.0.0")
    };
    let created = tus(reqwest::Method::POST, format!("{}/v1/uploads", node.base))
        .header("upload-length", image.len().to_string())
        .send()
        .await
        .unwrap();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let first = tus(reqwest::Method::PATCH, format!("{}{location}", node.base))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .body(image[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 204);
    node.kill();

    let node = Node::serve(dir.path(), &backend, &["--workers", "1"]);
    let head = tus(reqwest::Method::HEAD, format!("{}{location}", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.headers()["upload-offset"].to_str().unwrap(),
        half.to_string()
    );
    let rest = tus(reqwest::Method::PATCH, format!("{}{location}", node.base))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", half.to_string())
        .body(image[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    let upload_id = location.rsplit('/').next().unwrap();
    let post: Value = client
        .post(format!("{}/v1/posts", node.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"upload_id": upload_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(post["status"], "processing", "{post}");
}
