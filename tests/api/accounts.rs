use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, backend, error_fields, problem};

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
    let mut me: Value = app.get_json("/v1/me", Some(&token)).await;
    assert_eq!(me["role"], "user", "/v1/me adds the role");
    me.as_object_mut().unwrap().remove("role");
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

async fn login(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/v1/sessions",
        None,
        json!({"username": name, "password": password}),
    )
    .await
}

async fn login_token(app: &TestApp, name: &str, password: &str) -> String {
    let resp = login(app, name, password).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

async fn session_list(app: &TestApp, token: &str) -> Vec<Value> {
    let list = app.get_json("/v1/me/sessions", Some(token)).await;
    list["items"].as_array().unwrap().clone()
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.get("/v1/me", Some(token)).await.status().as_u16()
}

/// `helpers::TestApp::register`'s password.
const PASSWORD: &str = "correct horse";

#[tokio::test]
async fn sessions_are_listed_and_one_can_be_revoked() {
    let app = TestApp::spawn().await;
    let first = app.register("carol").await;
    let second = login_token(&app, "carol", PASSWORD).await;
    let third = login_token(&app, "carol", PASSWORD).await;
    let items = session_list(&app, &first).await;
    assert_eq!(items.len(), 3, "{items:?}");
    let current: Vec<&Value> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1, "exactly the session asking is current");
    for s in &items {
        assert!(s["created_at"].is_string() && s["last_used_at"].is_string());
        let id = s["id"].as_str().unwrap();
        assert!(
            ![&first, &second, &third]
                .iter()
                .any(|t| t.contains(id) || id.contains(t.as_str()))
        );
    }
    let ids: std::collections::HashSet<&str> =
        items.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3, "ids are distinct");

    // The second session's id, as that session sees itself.
    let second_id = session_list(&app, &second)
        .await
        .into_iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dave = app.register("dave").await;
    problem(
        app.delete(&format!("/v1/me/sessions/{second_id}"), &dave)
            .await,
        404,
    )
    .await;
    assert_eq!(
        me_status(&app, &second).await,
        200,
        "another account cannot revoke it"
    );
    problem(
        app.delete("/v1/me/sessions/not-a-session", &first).await,
        404,
    )
    .await;

    assert_eq!(
        app.delete(&format!("/v1/me/sessions/{second_id}"), &first)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        me_status(&app, &second).await,
        401,
        "revoked at once on this node"
    );
    assert_eq!(me_status(&app, &third).await, 200);
    let left = session_list(&app, &first).await;
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|s| s["id"] != second_id.as_str()));
    problem(
        app.delete(&format!("/v1/me/sessions/{second_id}"), &first)
            .await,
        404,
    )
    .await;
    problem(app.get("/v1/me/sessions", None).await, 401).await;
}

#[tokio::test]
async fn a_password_change_keeps_this_session_and_revokes_the_others() {
    let app = TestApp::spawn().await;
    let mine = app.register("erin").await;
    let other = login_token(&app, "erin", PASSWORD).await;
    let change = |current: &str, new: &str| {
        app.client
            .put(app.url("/v1/me/password"))
            .bearer_auth(&mine)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
    };

    let wrong = problem(
        change("not my password", "a new password").await.unwrap(),
        422,
    )
    .await;
    assert_eq!(error_fields(&wrong), ["current_password"]);
    let short = problem(change(PASSWORD, "short").await.unwrap(), 422).await;
    assert_eq!(error_fields(&short), ["new_password"]);
    assert_eq!(
        me_status(&app, &other).await,
        200,
        "a refused change changes nothing"
    );
    assert_eq!(login(&app, "erin", PASSWORD).await.status(), 201);

    let resp = change(PASSWORD, "a new password").await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me_status(&app, &mine).await,
        200,
        "the session that changed it stays"
    );
    assert_eq!(
        me_status(&app, &other).await,
        401,
        "every other session is revoked"
    );
    assert_eq!(session_list(&app, &mine).await.len(), 1);
    problem(login(&app, "erin", PASSWORD).await, 401).await;
    assert_eq!(login(&app, "erin", "a new password").await.status(), 201);
}

#[tokio::test]
async fn a_session_unused_for_the_ttl_expires() {
    let app = TestApp::spawn_with(|a| {
        a.session_cache_ms = Some(0);
        a.session_ttl_days = Some(30);
    })
    .await;
    let stale = app.register("frank").await;
    let fresh = login_token(&app, "frank", PASSWORD).await;
    assert_eq!(session_list(&app, &fresh).await.len(), 2);
    // The first session was last used 31 days ago, behind the API's back.
    let age = match backend() {
        Backend::Embedded => "last_used_at - 31 * 86400000",
        Backend::PostgresS3 => "last_used_at - interval '31 days'",
    };
    app.execute_sql(&format!(
        "UPDATE sessions SET last_used_at = {age}, created_at = {} \
         WHERE last_used_at = (SELECT min(last_used_at) FROM sessions)",
        age.replace("last_used_at", "created_at")
    ))
    .await;
    assert_eq!(
        session_list(&app, &fresh).await.len(),
        1,
        "an expired session is not listed"
    );
    assert_eq!(me_status(&app, &stale).await, 401);
    assert_eq!(me_status(&app, &fresh).await, 200);
}
