use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_fields, problem};

#[tokio::test]
async fn register_login_me_logout() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_json(
            "/v1/users",
            None,
            json!({"username": "Alice_1", "password": "hunter2hunter2"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["user"]["username"], "alice_1",
        "usernames are stored lowercase"
    );
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 43, "at least 256 bits of token");
    let me: Value = app.get_json("/v1/me", Some(&token)).await;
    assert_eq!(me, body["user"]);

    let login = app
        .post_json(
            "/v1/sessions",
            None,
            json!({"username": "ALICE_1", "password": "hunter2hunter2"}),
        )
        .await;
    assert_eq!(login.status(), StatusCode::CREATED);
    let second: Value = login.json().await.unwrap();
    let token2 = second["token"].as_str().unwrap().to_owned();
    assert_ne!(token, token2);

    assert_eq!(
        app.delete("/v1/sessions/current", &token).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(app.get("/v1/me", Some(&token)).await, 401).await;
    assert_eq!(
        app.get("/v1/me", Some(&token2)).await.status(),
        StatusCode::OK,
        "other sessions live on"
    );
}

#[tokio::test]
async fn usernames_are_unique_ignoring_case() {
    let app = TestApp::spawn().await;
    app.register("bob").await;
    let resp = app
        .post_json(
            "/v1/users",
            None,
            json!({"username": "BOB", "password": "another password"}),
        )
        .await;
    problem(resp, 409).await;
}

#[tokio::test]
async fn registration_validates_every_field() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_json(
            "/v1/users",
            None,
            json!({"username": "x!", "password": "short"}),
        )
        .await;
    let p = problem(resp, 422).await;
    assert_eq!(error_fields(&p), ["username", "password"]);
    for name in ["ab", &"a".repeat(33), "has space", "ünï"] {
        let resp = app
            .post_json(
                "/v1/users",
                None,
                json!({"username": name, "password": "long enough"}),
            )
            .await;
        assert_eq!(error_fields(&problem(resp, 422).await), ["username"]);
    }
    // Nothing was created by the rejected calls.
    let resp = app
        .post_json(
            "/v1/sessions",
            None,
            json!({"username": "ab", "password": "long enough"}),
        )
        .await;
    problem(resp, 401).await;
}

#[tokio::test]
async fn wrong_credentials_are_401() {
    let app = TestApp::spawn().await;
    app.register("carol").await;
    for (u, p) in [
        ("carol", "wrong password"),
        ("nobody", "correct horse"),
        ("x", "correct horse"),
    ] {
        let resp = app
            .post_json("/v1/sessions", None, json!({"username": u, "password": p}))
            .await;
        problem(resp, 401).await;
    }
}

#[tokio::test]
async fn malformed_requests_are_4xx_problems() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/v1/users"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    problem(resp, 400).await;
    problem(
        app.post_json("/v1/users", None, json!({"username": "dave"}))
            .await,
        422,
    )
    .await;
    let resp = app
        .client
        .post(app.url("/v1/users"))
        .body("username=x")
        .send()
        .await
        .unwrap();
    problem(resp, 415).await;
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let app = TestApp::spawn().await;
    problem(app.get("/v1/me", None).await, 401).await;
    problem(app.get("/v1/me", Some("not-a-token")).await, 401).await;
    let resp = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    let www = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(www.starts_with("Bearer"));
    problem(resp, 401).await;
    // Anonymous reads work, but a bad token on a read is still refused.
    assert_eq!(app.get("/v1/posts", None).await.status(), StatusCode::OK);
    problem(
        app.get(
            "/v1/posts/00000000-0000-0000-0000-000000000000",
            Some("bogus"),
        )
        .await,
        401,
    )
    .await;
}
