//! Data exports: a zip of everything the account made, originals byte-exact,
//! only for its owner, announced by an `export.ready` event, kept a week.

use std::io::Read;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::events::Sse;
use crate::helpers::{Backend, TestApp, backend, jpeg, png, problem};

fn entry(zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    zip.by_name(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

#[tokio::test]
async fn an_export_holds_everything_the_account_made_for_its_owner_only() {
    let app = TestApp::spawn().await;
    let owner = app.register("keeper").await;
    let other = app.register("stranger").await;
    let (photo, drawing) = (jpeg(70, 50), png(30, 20));
    let mut posts = Vec::new();
    for (caption, bytes) in [("a photo", photo.clone()), ("a drawing", drawing.clone())] {
        let post: Value = app
            .upload(&owner, &[("caption", caption)], Some(bytes))
            .await
            .json()
            .await
            .unwrap();
        posts.push(post["id"].as_str().unwrap().to_owned());
    }
    app.drain_jobs().await;
    let theirs = app.ready_post(&other, "not mine").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (token, post, body) in [
        (&owner, &posts[0], "my own words"),
        (&owner, &theirs, "words on theirs"),
        (&other, &posts[0], "their words"),
    ] {
        assert_eq!(
            app.comment(token, post, body).await.status(),
            StatusCode::CREATED
        );
    }

    let mut events = Sse::open(&app, &owner, None).await;
    let asked = app
        .client
        .post(app.url("/v1/me/exports"))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), StatusCode::ACCEPTED);
    let asked: Value = asked.json().await.unwrap();
    let id = asked["id"].as_str().unwrap().to_owned();
    assert_eq!(asked["status"], "processing");
    assert_eq!(asked["url"], Value::Null);
    let (created, expires) = (
        chrono::DateTime::parse_from_rfc3339(asked["created_at"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(asked["expires_at"].as_str().unwrap()).unwrap(),
    );
    assert_eq!(expires - created, chrono::Duration::days(7), "kept a week");

    // Built in the background (drained here so the test does not wait on it).
    app.services().build_pending_exports().await.unwrap();
    let ready = loop {
        let event = events
            .next(Duration::from_secs(20))
            .await
            .expect("an export.ready event");
        if event.kind == "export.ready" {
            break event;
        }
    };
    assert_eq!(ready.data["export_id"], id.as_str());
    let shown = app
        .get_json(&format!("/v1/me/exports/{id}"), Some(&owner))
        .await;
    assert_eq!(shown["status"], "ready");
    let url = shown["url"].as_str().unwrap().to_owned();
    assert_eq!(ready.data["url"], url.as_str());

    // Only its owner sees or fetches it.
    problem(
        app.get(&format!("/v1/me/exports/{id}"), Some(&other)).await,
        404,
    )
    .await;
    problem(app.get(&url, Some(&other)).await, 404).await;
    problem(app.get(&url, None).await, 401).await;

    let download = app.get(&url, Some(&owner)).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "application/zip");
    let bytes = download.bytes().await.unwrap().to_vec();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let account: Value = serde_json::from_slice(&entry(&mut zip, "account.json")).unwrap();
    assert_eq!(account["username"], "keeper");
    assert_eq!(account["role"], "user");
    let listed: Value = serde_json::from_slice(&entry(&mut zip, "posts.json")).unwrap();
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut expected: Vec<&str> = posts.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(ids, expected, "all and only the account's posts");
    let comments: Value = serde_json::from_slice(&entry(&mut zip, "comments.json")).unwrap();
    let mut bodies: Vec<&str> = comments
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        ["my own words", "words on theirs"],
        "all and only the account's comments"
    );
    assert_eq!(
        entry(&mut zip, &format!("originals/{}.jpg", posts[0])),
        photo,
        "byte-exact"
    );
    assert_eq!(
        entry(&mut zip, &format!("originals/{}.png", posts[1])),
        drawing,
        "byte-exact"
    );
    assert_eq!(zip.len(), 5);

    // A week later it is gone, zip and all.
    let past = match backend() {
        Backend::Embedded => "expires_at - 8 * 86400000",
        Backend::PostgresS3 => "expires_at - interval '8 days'",
    };
    app.execute_sql(&format!("UPDATE exports SET expires_at = {past}"))
        .await;
    assert!(app.sweep().await >= 1);
    problem(
        app.get(&format!("/v1/me/exports/{id}"), Some(&owner)).await,
        404,
    )
    .await;
    assert!(
        app.blob(&format!("exports/{id}.zip")).await.is_none(),
        "the zip is deleted"
    );
    problem(app.get("/v1/me/exports/not-an-id", Some(&owner)).await, 404).await;
}
