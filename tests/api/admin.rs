//! Roles and the operator's `imagegram admin` command, against the real binary
//! on the same instance as a running node.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, error_fields, problem};

/// Runs `imagegram admin ARGS` on the test node's instance with `stdin`;
/// its exit status and standard output and error.
fn admin(app: &TestApp, args: &[&str], stdin: &str) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imagegram"));
    // The instance's flags come before the action, as for any subcommand.
    command.arg("admin").arg("--data-dir").arg(&app.data_dir);
    if let Some(url) = &app.database_url {
        command.args(["--database-url", url]);
    }
    command.args(args);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

async fn role(app: &TestApp, token: &str) -> Value {
    app.get_json("/v1/me", Some(token)).await["role"].clone()
}

async fn put_role(app: &TestApp, token: &str, username: &str, role: &str) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/v1/admin/users/{username}/role")))
        .bearer_auth(token)
        .json(&json!({ "role": role }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn roles_are_granted_by_the_operator_and_by_admins_only() {
    // No session cache: the command is another process, and what it changes
    // is seen at the next request (a cache would make it the next second).
    let app = TestApp::spawn_with(|a| a.session_cache_ms = Some(0)).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    assert_eq!(role(&app, &alice).await, "user");

    // Everyone who is not an admin is refused, and nothing changes.
    problem(put_role(&app, &alice, "alice", "admin").await, 403).await;
    problem(put_role(&app, "not-a-token", "alice", "admin").await, 401).await;
    assert_eq!(role(&app, &alice).await, "user");

    let (ok, out) = admin(&app, &["set-role", "alice", "admin"], "");
    assert!(ok, "{out}");
    assert_eq!(
        role(&app, &alice).await,
        "admin",
        "the live session sees it"
    );

    let (ok, out) = admin(&app, &["set-role", "nobody_here", "admin"], "");
    assert!(!ok && out.contains("no such user"), "{out}");
    let (ok, out) = admin(&app, &["set-role", "bob", "root"], "");
    assert!(!ok && out.contains("role"), "{out}");
    assert_eq!(role(&app, &bob).await, "user");

    // An admin grants roles through the API.
    assert_eq!(
        put_role(&app, &alice, "bob", "moderator").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(role(&app, &bob).await, "moderator");
    let wrong = problem(put_role(&app, &alice, "bob", "king").await, 422).await;
    assert_eq!(error_fields(&wrong), ["role"]);
    problem(put_role(&app, &alice, "nobody_here", "user").await, 404).await;
    // A moderator is not an admin.
    problem(put_role(&app, &bob, "bob", "admin").await, 403).await;
    assert_eq!(
        put_role(&app, &alice, "bob", "user").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(role(&app, &bob).await, "user");
}

#[tokio::test]
async fn a_password_reset_by_the_operator_revokes_every_session() {
    let app = TestApp::spawn_with(|a| a.session_cache_ms = Some(0)).await;
    let token = app.register("grace").await;
    let login = |password: &'static str| {
        app.post_json(
            "/v1/sessions",
            None,
            json!({"username": "grace", "password": password}),
        )
    };

    let (ok, out) = admin(&app, &["reset-password", "grace"], "short\n");
    assert!(!ok && out.contains("password"), "{out}");
    assert_eq!(
        app.get("/v1/me", Some(&token)).await.status(),
        200,
        "a refused reset changes nothing"
    );

    let (ok, out) = admin(&app, &["reset-password", "grace"], "a brand new secret\n");
    assert!(ok, "{out}");
    problem(app.get("/v1/me", Some(&token)).await, 401).await;
    problem(login("correct horse").await, 401).await;
    assert_eq!(
        login("a brand new secret").await.status(),
        StatusCode::CREATED
    );
}
