use reqwest::StatusCode;

use crate::helpers::{TestApp, problem};

#[tokio::test]
async fn derived_images_are_cacheable_forever() {
    let app = TestApp::spawn().await;
    let token = app.register("photog").await;
    let post = app.ready_post(&token, "p").await;
    let url = post["image"]["url"].as_str().unwrap();
    let resp = app.get(url, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
    let etag = h["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong ETag"
    );
    let body = resp.bytes().await.unwrap();

    let cached = app
        .client
        .get(app.url(url))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    assert!(cached.bytes().await.unwrap().is_empty());

    let part = app
        .client
        .get(app.url(url))
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-9/{}", body.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), body.slice(0..10));

    let past = format!("bytes={}-", body.len() + 10);
    let resp = app
        .client
        .get(app.url(url))
        .header("range", past)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes */{}", body.len()).as_str()
    );
    problem(resp, 416).await;

    let head = app.client.head(app.url(url)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["etag"].to_str().unwrap(), etag);
    assert!(head.bytes().await.unwrap().is_empty());

    problem(
        app.get(
            "/v1/images/0123456789abcdef0123456789abcdef01234567.jpg",
            None,
        )
        .await,
        404,
    )
    .await;
    problem(
        app.get("/v1/images/..%2F..%2Fimagegram.db", None).await,
        404,
    )
    .await;
}

#[tokio::test]
async fn post_representations_carry_an_etag() {
    let app = TestApp::spawn().await;
    let token = app.register("tagger").await;
    let post = app.ready_post(&token, "p").await;
    let path = format!("/v1/posts/{}", post["id"].as_str().unwrap());
    let etag = app.get(&path, None).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let again = app
        .client
        .get(app.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    app.comment(&token, post["id"].as_str().unwrap(), "changes it")
        .await;
    let changed = app
        .client
        .get(app.url(&path))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
}
