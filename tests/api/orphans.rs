//! Blobs no row names (a crash between storing a blob and committing its row,
//! or a failure whose outcome was unknown) are found by the sweeper and
//! deleted once old enough; blobs that rows name are never touched.

use std::time::Duration;

use crate::helpers::{Backend, TestApp, backend};

/// A bucket of this test's own on the S3 backend: the sweep judges every blob
/// in its store, and the suite's shared bucket holds other tests' blobs.
async fn own_bucket() -> Option<String> {
    if backend() != Backend::PostgresS3 {
        return None;
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL for the S3 suite");
    let bucket = format!("igtest-orphans-{}", uuid::Uuid::new_v4().simple());
    let resp = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "creating {bucket}: {}",
        resp.status()
    );
    Some(format!("s3://{bucket}"))
}

#[tokio::test]
async fn blobs_no_row_names_are_collected_once_old_enough() {
    let bucket = own_bucket().await;
    let app = TestApp::spawn_with(|a| {
        if let Some(b) = bucket {
            a.blob_url = Some(b);
        }
    })
    .await;
    let token = app.register("hoarder").await;
    let post = app.ready_post(&token, "kept").await;
    let kept_original = format!("originals/{}", post["id"].as_str().unwrap());
    // A live upload with a committed chunk.
    let created = app
        .client
        .post(app.url("/v1/uploads"))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let patched = app
        .client
        .patch(app.url(&location))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body("abcde")
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 204);
    // What a crash leaves: blobs whose rows never committed.
    let orphans = [
        format!("originals/{}", uuid::Uuid::now_v7()),
        format!(
            "uploads/{}/000000000000-{}",
            uuid::Uuid::now_v7(),
            uuid::Uuid::new_v4().simple()
        ),
    ];
    let blobs = &app.services().blobs;
    for key in &orphans {
        blobs
            .put_bytes(key, bytes::Bytes::from_static(b"left behind"))
            .await
            .unwrap();
    }

    // Young blobs are not judged: their rows may still be committing.
    let removed = app
        .services()
        .collect_orphans(imagegram::service::ORPHAN_AGE)
        .await
        .unwrap();
    assert_eq!(removed, 0);
    assert!(blobs.get(&orphans[0]).await.unwrap().is_some());

    // Old enough (here: any age), orphans go and named blobs stay.
    let removed = app
        .services()
        .collect_orphans(Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(removed, 2);
    for key in &orphans {
        assert!(
            blobs.get(key).await.unwrap().is_none(),
            "{key} was collected"
        );
    }
    assert!(
        blobs.get(&kept_original).await.unwrap().is_some(),
        "a post's original stays"
    );
    assert_eq!(
        app.upload_bytes(&location).await,
        b"abcde",
        "a committed chunk stays"
    );
}
