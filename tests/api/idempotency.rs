//! Idempotency-Key: retries replay, different bodies are refused, concurrent
//! retries cannot both do the work, and keys are per user.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, jpeg, problem};

async fn comment_with_key(
    app: &TestApp,
    token: &str,
    post: &str,
    key: &str,
    body: &str,
) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/v1/posts/{post}/comments")))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&json!({"body": body}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_retry_replays_the_original_response() {
    let app = TestApp::spawn().await;
    let token = app.register("retrier").await;
    let post = app.ready_post(&token, "p").await;
    let id = post["id"].as_str().unwrap();
    let first = comment_with_key(&app, &token, id, "\"key-1\"", "only once").await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();
    let retry = comment_with_key(&app, &token, id, "\"key-1\"", "only once").await;
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"], location);
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    let post = app.get_json(&format!("/v1/posts/{id}"), None).await;
    assert_eq!(post["comment_count"], 1, "the retry did not comment twice");
    // Same key, different request: refused, nothing created.
    let p = problem(
        comment_with_key(&app, &token, id, "\"key-1\"", "something else").await,
        422,
    )
    .await;
    assert_eq!(p["type"], "/problems/idempotency-key-reused");
    // Another user's identical key is a different key.
    let other = app.register("someone").await;
    assert_eq!(
        comment_with_key(&app, &other, id, "\"key-1\"", "only once")
            .await
            .status(),
        201
    );
    assert_eq!(
        app.get_json(&format!("/v1/posts/{id}"), None).await["comment_count"],
        2
    );
    // Malformed keys are refused.
    problem(comment_with_key(&app, &token, id, "", "x").await, 400).await;
    problem(
        comment_with_key(&app, &token, id, &"k".repeat(300), "x").await,
        400,
    )
    .await;
}

#[tokio::test]
async fn concurrent_retries_do_the_work_once() {
    let app = TestApp::spawn().await;
    let token = app.register("hammer").await;
    let post = app.ready_post(&token, "p").await;
    let id = post["id"].as_str().unwrap().to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/v1/posts/{id}/comments")),
            token.clone(),
        );
        tasks.spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", "race")
                .json(&json!({"body": "once"}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, body)
        });
    }
    let results = tasks.join_all().await;
    let created: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, b)| b["id"].clone())
        .collect();
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|c| *c == created[0]),
        "every 201 is the same comment"
    );
    assert!(
        results.iter().all(|(s, _)| *s == 201 || *s == 409),
        "{results:?}"
    );
    assert_eq!(
        app.get_json(&format!("/v1/posts/{id}"), None).await["comment_count"],
        1
    );
}

#[tokio::test]
async fn posts_uploads_and_registrations_are_idempotent_too() {
    let app = TestApp::spawn().await;
    let make = |key: &'static str| {
        app.client
            .post(app.url("/v1/users"))
            .header("idempotency-key", key)
            .json(&json!({"username": "twice", "password": "correct horse"}))
    };
    let first = make("reg").send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = make("reg").send().await.unwrap();
    assert_eq!(again.status(), 201, "a retried registration is not a 409");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["user"], first["user"]);
    // Tokens are never stored in plaintext, so the replay carries a new, working one.
    let token = again["token"].as_str().unwrap();
    assert_eq!(
        app.get("/v1/me", Some(token)).await.status(),
        StatusCode::OK
    );

    let image = jpeg(32, 32);
    let upload = |key: &'static str| {
        let form = reqwest::multipart::Form::new()
            .text("caption", "retried")
            .part(
                "image",
                reqwest::multipart::Part::bytes(image.clone()).file_name("a.jpg"),
            );
        app.client
            .post(app.url("/v1/posts"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .multipart(form)
    };
    let a: Value = upload("post-1").send().await.unwrap().json().await.unwrap();
    let b: Value = upload("post-1").send().await.unwrap().json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    let tus = |key: &'static str| {
        app.client
            .post(app.url("/v1/uploads"))
            .bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "100")
            .header("idempotency-key", key)
    };
    let a = tus("up-1").send().await.unwrap();
    let b = tus("up-1").send().await.unwrap();
    assert_eq!(a.status(), 201);
    assert_eq!(a.headers()["location"], b.headers()["location"]);
    // A replayed error is still a problem document, with this request's id.
    let bad = app
        .post_json("/v1/users", None, json!({"username": "x", "password": "y"}))
        .await;
    problem(bad, 422).await;
    let bad = || {
        app.client
            .post(app.url("/v1/users"))
            .header("idempotency-key", "bad-reg")
            .json(&json!({"username": "x", "password": "y"}))
    };
    problem(bad().send().await.unwrap(), 422).await;
    let replayed = bad().send().await.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    problem(replayed, 422).await;
}
