use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, error_fields, problem};

#[tokio::test]
async fn comment_list_and_delete() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let post = app.ready_post(&alice, "p").await;
    let id = post["id"].as_str().unwrap();
    let resp = app.comment(&bob, id, "first!").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/posts/{id}/comments/{}", first["id"].as_str().unwrap())
    );
    assert_eq!(first["post_id"], id);
    assert_eq!(first["author"]["username"], "bob");
    assert_eq!(first["body"], "first!");
    for n in 0..3 {
        app.comment(&alice, id, &format!("reply {n}")).await;
    }
    let page: Value = app
        .get_json(&format!("/v1/posts/{id}/comments?limit=3"), None)
        .await;
    let bodies: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].clone())
        .collect();
    assert_eq!(bodies, ["reply 2", "reply 1", "reply 0"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get_json(
            &format!("/v1/posts/{id}/comments?limit=3&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(rest["items"][0]["body"], "first!");
    assert!(rest["next_cursor"].is_null());

    let first_path = format!("/v1/posts/{id}/comments/{}", first["id"].as_str().unwrap());
    problem(app.delete(&first_path, &alice).await, 403).await;
    assert_eq!(
        app.delete(&first_path, &bob).await.status(),
        StatusCode::NO_CONTENT
    );
    problem(app.delete(&first_path, &bob).await, 404).await;
    let after: Value = app.get_json(&format!("/v1/posts/{id}"), None).await;
    assert_eq!(
        after["comment_count"], 3,
        "a second delete changes no count"
    );
    // Deleting the newest comment brings the next one into the last two.
    let newest = page["items"][0]["id"].as_str().unwrap();
    app.delete(&format!("/v1/posts/{id}/comments/{newest}"), &alice)
        .await;
    let after: Value = app.get_json(&format!("/v1/posts/{id}"), None).await;
    let last: Vec<_> = after["last_comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].clone())
        .collect();
    assert_eq!(last, ["reply 1", "reply 0"]);
    assert_eq!(after["comment_count"], 2);
}

#[tokio::test]
async fn comment_errors() {
    let app = TestApp::spawn().await;
    let token = app.register("critic").await;
    let post = app.ready_post(&token, "p").await;
    let id = post["id"].as_str().unwrap();
    for body in ["", "   ", &"x".repeat(1001)] {
        assert_eq!(
            error_fields(&problem(app.comment(&token, id, body).await, 422).await),
            ["body"]
        );
    }
    assert_eq!(
        app.comment(&token, id, &"ü".repeat(1000)).await.status(),
        201
    );
    problem(
        app.comment(&token, "00000000-0000-7000-8000-000000000000", "hi")
            .await,
        404,
    )
    .await;
    problem(app.comment(&token, "nonsense", "hi").await, 404).await;
    let resp = app
        .client
        .post(app.url(&format!("/v1/posts/{id}/comments")))
        .json(&serde_json::json!({"body": "anonymous"}))
        .send()
        .await
        .unwrap();
    problem(resp, 401).await;
    // A comment id that exists, under the wrong post.
    let other = app.ready_post(&token, "q").await;
    let c: Value = app.comment(&token, id, "here").await.json().await.unwrap();
    let wrong = format!(
        "/v1/posts/{}/comments/{}",
        other["id"].as_str().unwrap(),
        c["id"].as_str().unwrap()
    );
    problem(app.delete(&wrong, &token).await, 404).await;
    problem(
        app.get(&format!("/v1/posts/{id}/comments?cursor=bad"), None)
            .await,
        400,
    )
    .await;
}

/// Many writers at once: counts and the stored last two stay exact.
#[tokio::test]
async fn counts_stay_exact_under_concurrent_writes() {
    let app = TestApp::spawn().await;
    let tokens = [
        app.register("writer1").await,
        app.register("writer2").await,
        app.register("writer3").await,
    ];
    let post = app.ready_post(&tokens[0], "busy").await;
    let id = post["id"].as_str().unwrap().to_owned();
    let mut writes = tokio::task::JoinSet::new();
    for n in 0..60 {
        let (client, url, token) = (
            app.client.clone(),
            app.url(&format!("/v1/posts/{id}/comments")),
            tokens[n % 3].clone(),
        );
        writes.spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"body": format!("c{n}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            let c: Value = resp.json().await.unwrap();
            (c["id"].as_str().unwrap().to_owned(), n % 3)
        });
    }
    let created: Vec<(String, usize)> = writes.join_all().await;
    let post: Value = app.get_json(&format!("/v1/posts/{id}"), None).await;
    assert_eq!(post["comment_count"], 60);
    let mut sorted: Vec<_> = created.iter().map(|(c, _)| c.clone()).collect();
    sorted.sort();
    let last: Vec<_> = post["last_comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(last, [sorted[59].clone(), sorted[58].clone()]);

    // Delete half of them, each one twice at the same time: exactly one of each pair wins.
    let mut deletes = tokio::task::JoinSet::new();
    for (cid, owner) in created.iter().take(30) {
        for _ in 0..2 {
            let (client, url, token) = (
                app.client.clone(),
                app.url(&format!("/v1/posts/{id}/comments/{cid}")),
                tokens[*owner].clone(),
            );
            deletes.spawn(async move {
                client
                    .delete(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            });
        }
    }
    let statuses = deletes.join_all().await;
    assert_eq!(statuses.iter().filter(|&&s| s == 204).count(), 30);
    assert_eq!(statuses.iter().filter(|&&s| s == 404).count(), 30);
    let post: Value = app.get_json(&format!("/v1/posts/{id}"), None).await;
    assert_eq!(post["comment_count"], 30);
    let remaining: HashSet<_> = created.iter().skip(30).map(|(c, _)| c.clone()).collect();
    let mut remaining_sorted: Vec<_> = remaining.iter().cloned().collect();
    remaining_sorted.sort();
    let last: Vec<_> = post["last_comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        last,
        [remaining_sorted[29].clone(), remaining_sorted[28].clone()]
    );
}
