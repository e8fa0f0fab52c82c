//! Editing posts: author only, validated, If-Match against a stale ETag → 412
//! with nothing changed; expiry set, removed, and swept.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_fields, problem};

async fn edit(
    app: &TestApp,
    token: &str,
    id: &str,
    body: Value,
    if_match: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .patch(app.url(&format!("/v1/posts/{id}")))
        .bearer_auth(token)
        .json(&body);
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn authors_edit_captions_and_expiry() {
    let app = TestApp::spawn().await;
    let alice = app.register("editor").await;
    let bob = app.register("meddler").await;
    let post = app.ready_post(&alice, "first draft").await;
    let id = post["id"].as_str().unwrap();
    let etag = app.get(&format!("/v1/posts/{id}"), None).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();

    let resp = edit(
        &app,
        &alice,
        id,
        json!({"caption": "final", "expires_in": 3600}),
        Some(&etag),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let new_etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    let edited: Value = resp.json().await.unwrap();
    assert_eq!(edited["caption"], "final");
    assert!(edited["expires_at"].is_string());
    assert_ne!(edited["updated_at"], post["updated_at"]);
    // A stale ETag: 412 and nothing changes.
    let stale = edit(
        &app,
        &alice,
        id,
        json!({"caption": "lost update"}),
        Some(&etag),
    )
    .await;
    problem(stale, 412).await;
    assert_eq!(
        app.get_json(&format!("/v1/posts/{id}"), None).await["caption"],
        "final"
    );
    // A comment changes the representation, so it changes the ETag too.
    app.comment(&bob, id, "hi").await;
    problem(
        edit(&app, &alice, id, json!({"caption": "x"}), Some(&new_etag)).await,
        412,
    )
    .await;
    // `expires_in: null` removes the expiry; `*` matches any version.
    let resp = edit(&app, &alice, id, json!({"expires_in": null}), Some("*")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.json::<Value>().await.unwrap()["expires_at"].is_null());

    problem(
        edit(&app, &bob, id, json!({"caption": "mine now"}), None).await,
        403,
    )
    .await;
    let anonymous = app
        .client
        .patch(app.url(&format!("/v1/posts/{id}")))
        .json(&json!({"caption": "x"}));
    problem(anonymous.send().await.unwrap(), 401).await;
    let p = problem(
        edit(
            &app,
            &alice,
            id,
            json!({"caption": "c".repeat(2201), "expires_in": 0, "author": "x"}),
            None,
        )
        .await,
        422,
    )
    .await;
    let mut fields = error_fields(&p);
    fields.sort();
    assert_eq!(fields, ["author", "caption", "expires_in"]);
    problem(
        edit(
            &app,
            &alice,
            "00000000-0000-7000-8000-000000000000",
            json!({"caption": "x"}),
            None,
        )
        .await,
        404,
    )
    .await;
    assert_eq!(
        app.get_json(&format!("/v1/posts/{id}"), None).await["caption"],
        "final"
    );
}

/// Concurrent edits with the same ETag: exactly one wins, no update is lost silently.
#[tokio::test]
async fn concurrent_conditional_edits_have_one_winner() {
    let app = TestApp::spawn().await;
    let token = app.register("contender").await;
    let post = app.ready_post(&token, "v0").await;
    let id = post["id"].as_str().unwrap().to_owned();
    let etag = app.get(&format!("/v1/posts/{id}"), None).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (client, url, token, etag) = (
            app.client.clone(),
            app.url(&format!("/v1/posts/{id}")),
            token.clone(),
            etag.clone(),
        );
        tasks.spawn(async move {
            let resp = client
                .patch(url)
                .bearer_auth(token)
                .header("if-match", etag)
                .json(&json!({"caption": format!("v{n}")}))
                .send()
                .await
                .unwrap();
            resp.status().as_u16()
        });
    }
    let mut statuses = tasks.join_all().await;
    statuses.sort();
    assert_eq!(statuses, [200, 412, 412, 412, 412, 412, 412, 412]);
}

#[tokio::test]
async fn expired_posts_are_swept_with_their_blobs() {
    let app = TestApp::spawn().await;
    let token = app.register("ephemeral").await;
    let post = app.ready_post(&token, "short-lived").await;
    let id = post["id"].as_str().unwrap();
    let image_key = post["image"]["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("/v1/images/")
        .to_owned();
    assert_eq!(
        edit(&app, &token, id, json!({"expires_in": 1}), None)
            .await
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    problem(app.get(&format!("/v1/posts/{id}"), Some(&token)).await, 404).await;
    assert!(app.sweep().await >= 1);
    assert!(
        app.blob(&format!("originals/{id}")).await.is_none(),
        "original deleted"
    );
    assert!(
        app.blob(&format!("derived/{image_key}")).await.is_none(),
        "derived image deleted"
    );
}
