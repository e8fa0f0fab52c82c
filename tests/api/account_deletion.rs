//! Account deletion: everything the account made is gone from every read at
//! once, others' counts and newest comments stay exact throughout, the
//! username is free again, and the purge removes the rows and blobs.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    Node, TestApp, backend_args, comment_bodies as bodies, error_fields, jpeg, page_ids, problem,
    register_at,
};

async fn delete_me(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.client
        .delete(app.url("/v1/me"))
        .bearer_auth(token)
        .json(&json!({ "password": password }))
        .send()
        .await
        .unwrap()
}

/// What a reader sees of two posts: (count, newest two) each, from the post
/// page, the feed and the comment listing, which must agree.
async fn seen(app: &TestApp, token: Option<&str>, post: &str) -> (i64, Vec<String>) {
    let page = app.get_json(&format!("/v1/posts/{post}"), token).await;
    let count = page["comment_count"].as_i64().unwrap();
    let last = bodies(&page["last_comments"]);
    let feed = app.get_json("/v1/posts?limit=100", token).await;
    let in_feed = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == post)
        .expect("in the feed")
        .clone();
    assert_eq!(
        in_feed["comment_count"], count,
        "the feed agrees on the count"
    );
    assert_eq!(
        bodies(&in_feed["last_comments"]),
        last,
        "and on the newest two"
    );
    // Pages past the first are read otherwise: a page of one post each.
    let deep = app.whole_feed(token, 1).await;
    let in_pages = deep.iter().find(|p| p["id"] == post).expect("in the pages");
    assert_eq!(in_pages, &page, "every page agrees with the post's own");
    let listed = app
        .get_json(&format!("/v1/posts/{post}/comments?limit=100"), token)
        .await;
    let all = bodies(&listed["items"]);
    assert_eq!(
        all.len() as i64,
        count,
        "the count is what the listing holds"
    );
    assert_eq!(&all[..last.len()], &last[..]);
    (count, last)
}

#[tokio::test]
async fn a_deleted_account_vanishes_at_once_and_is_purged() {
    let app = TestApp::spawn().await;
    let doomed = app.register("doomed").await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let second_session = app
        .post_json(
            "/v1/sessions",
            None,
            json!({"username": "doomed", "password": "correct horse"}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = app.ready_post(&doomed, "by doomed").await;
    let theirs_id = theirs["id"].as_str().unwrap().to_owned();
    let image = theirs["image"]["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("/v1/images/")
        .to_owned();
    // A post still processing when the account goes.
    let pending = app
        .upload(&doomed, &[("caption", "unfinished")], Some(jpeg(32, 32)))
        .await;
    assert_eq!(pending.status(), StatusCode::ACCEPTED);
    let alices = app.ready_post(&alice, "by alice").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bobs = app.ready_post(&bob, "by bob").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Its only comment here is below the newest two.
    let quiet = app.ready_post(&bob, "quiet").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (token, post, body) in [
        (&doomed, &quiet, "d0"),
        (&alice, &quiet, "a2"),
        (&alice, &quiet, "a3"),
        (&alice, &alices, "a1"),
        (&doomed, &alices, "d1"),
        (&bob, &alices, "b1"),
        (&doomed, &alices, "d2"),
        (&doomed, &bobs, "d3"),
        (&alice, &theirs_id, "on the doomed post"),
    ] {
        assert_eq!(
            app.comment(token, post, body).await.status(),
            StatusCode::CREATED
        );
    }
    assert_eq!(
        app.client
            .put(app.url("/v1/me/blocks/bob"))
            .bearer_auth(&doomed)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        seen(&app, None, &alices).await,
        (4, vec!["d2".into(), "b1".into()])
    );

    // The password confirms it; a wrong one changes nothing.
    let wrong = problem(delete_me(&app, &doomed, "not the password").await, 422).await;
    assert_eq!(error_fields(&wrong), ["password"]);
    assert_eq!(
        app.get(&format!("/v1/posts/{theirs_id}"), None)
            .await
            .status(),
        200
    );

    assert_eq!(
        delete_me(&app, &doomed, "correct horse").await.status(),
        StatusCode::NO_CONTENT
    );

    // At once, before the purge: every session is refused, everything the
    // account made is gone from every read, and others' counts and newest
    // comments are exact.
    for token in [&doomed, &second_session] {
        problem(app.get("/v1/me", Some(token)).await, 401).await;
    }
    problem(
        app.post_json(
            "/v1/sessions",
            None,
            json!({"username": "doomed", "password": "correct horse"}),
        )
        .await,
        401,
    )
    .await;
    for reader in [None, Some(alice.as_str()), Some(bob.as_str())] {
        problem(
            app.get(&format!("/v1/posts/{theirs_id}"), reader).await,
            404,
        )
        .await;
        let feed = page_ids(&app.get_json("/v1/posts?limit=100", reader).await);
        assert!(!feed.contains(&theirs_id), "{feed:?}");
        assert_eq!(
            seen(&app, reader, &alices).await,
            (2, vec!["b1".into(), "a1".into()])
        );
        assert_eq!(seen(&app, reader, &bobs).await, (0, vec![]));
        assert_eq!(
            seen(&app, reader, &quiet).await,
            (2, vec!["a3".into(), "a2".into()])
        );
    }
    problem(app.get("/v1/users/doomed/posts", None).await, 404).await;

    // The username is free at once, for someone new.
    let newcomer = app.register("doomed").await;
    assert_eq!(
        app.get_json("/v1/users/doomed/posts", None).await["items"],
        json!([])
    );
    assert_eq!(
        app.get_json("/v1/me", Some(&newcomer)).await["username"],
        "doomed"
    );

    // The purge removes the rows and blobs; reads stay as they were.
    assert_eq!(app.services().purge_deleted_accounts().await.unwrap(), 1);
    assert_eq!(
        app.services().purge_deleted_accounts().await.unwrap(),
        0,
        "done once"
    );
    for reader in [None, Some(alice.as_str())] {
        assert_eq!(
            seen(&app, reader, &alices).await,
            (2, vec!["b1".into(), "a1".into()])
        );
        assert_eq!(seen(&app, reader, &bobs).await, (0, vec![]));
        assert_eq!(
            seen(&app, reader, &quiet).await,
            (2, vec!["a3".into(), "a2".into()])
        );
    }
    assert!(
        app.blob(&format!("derived/{image}")).await.is_none(),
        "its images are purged"
    );
    assert_eq!(
        app.drain_jobs().await,
        0,
        "the unfinished post's job went with it"
    );
    let feed = page_ids(&app.get_json("/v1/posts?limit=100", None).await);
    assert_eq!(
        feed.len(),
        3,
        "only alice's and bob's posts are left: {feed:?}"
    );
}

/// A 204 means the deletion is durable: the real binary, killed with SIGKILL
/// the moment it answered and started again, still hides the account, refuses
/// its token and keeps the username free; others' counts stay exact.
#[tokio::test]
async fn an_acknowledged_deletion_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let flags = [
        "--workers",
        "1",
        "--session-cache-ms",
        "0",
        "--feed-cache-ms",
        "0",
    ];
    let mut node = Node::serve(dir.path(), &backend, &flags);
    let client = reqwest::Client::new();
    let doomed = register_at(&node.base, "crashed").await;
    let alice = register_at(&node.base, "witness").await;
    let form = reqwest::multipart::Form::new()
        .text("caption", "hers")
        .part(
            "image",
            reqwest::multipart::Part::bytes(jpeg(40, 30))
                .file_name("p.jpg")
                .mime_str("image/jpeg")
                .unwrap(),
        );
    let post: Value = client
        .post(format!("{}/v1/posts", node.base))
        .bearer_auth(&alice)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let post_url = format!("{}/v1/posts/{}", node.base, post["id"].as_str().unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while client.get(&post_url).send().await.unwrap().status() != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the post never became ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (token, body) in [(&doomed, "gone soon"), (&alice, "staying")] {
        let resp = client
            .post(format!("{post_url}/comments"))
            .bearer_auth(token)
            .json(&json!({ "body": body }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let deleted = client
        .delete(format!("{}/v1/me", node.base))
        .bearer_auth(&doomed)
        .json(&json!({"password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    node.kill();

    let node = Node::serve(dir.path(), &backend, &flags);
    let post_url = post_url.replace(&post_url[..post_url.find("/v1/").unwrap()], &node.base);
    let me = client
        .get(format!("{}/v1/me", node.base))
        .bearer_auth(&doomed)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    let seen: Value = client
        .get(&post_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["comment_count"], 1);
    assert_eq!(bodies(&seen["last_comments"]), ["staying"]);
    assert!(
        !register_at(&node.base, "crashed").await.is_empty(),
        "the name is free"
    );
}
