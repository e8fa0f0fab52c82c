//! Scale-out: two API nodes and two image workers, each its own process, on one
//! shared instance. Requests alternate between the API nodes; one worker is
//! killed with SIGKILL in the middle of a job.

use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Node, backend_args, jpeg, login_at, png, register_at};

async fn read(client: &reqwest::Client, url: String, token: &str) -> Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn api_nodes_and_workers_share_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let a = Node::serve(dir.path(), &backend, &["--workers", "0"]);
    let b = Node::serve(dir.path(), &backend, &["--workers", "0"]);
    let nodes = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();

    // An account made on one node logs in on the other; its token works on both.
    let made = client
        .post(format!("{}/v1/users", nodes[0]))
        .json(&json!({"username": "roamer", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let session: Value = client
        .post(format!("{}/v1/sessions", nodes[1]))
        .json(&json!({"username": "roamer", "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let me: Value = read(&client, format!("{}/v1/me", nodes[0]), &token).await;
    assert_eq!(me["username"], "roamer");

    let post = |n: usize, image: Vec<u8>| {
        let (client, url, token) = (
            client.clone(),
            format!("{}/v1/posts", nodes[n % 2]),
            token.clone(),
        );
        async move {
            let form = Form::new()
                .text("caption", format!("post {n}"))
                .part("image", Part::bytes(image).file_name("p.jpg"));
            let resp = client
                .post(url)
                .bearer_auth(token)
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            resp.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };

    // The first worker holds whatever it claims for a minute, so it is mid-job when killed.
    let mut doomed = Node::worker(
        dir.path(),
        &backend,
        &[
            "--workers",
            "1",
            "--job-lease-secs",
            "2",
            "--debug-job-delay-ms",
            "60000",
        ],
    );
    let mut ids = vec![post(0, jpeg(320, 240)).await];
    // PostgreSQL wakes it at once (NOTIFY); on SQLite a worker in another process
    // polls every 2 s. Either way it holds post 0 before the second worker exists.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let _survivor = Node::worker(
        dir.path(),
        &backend,
        &["--workers", "1", "--job-lease-secs", "2"],
    );
    for n in 1..6 {
        ids.push(
            post(
                n,
                if n % 2 == 0 {
                    jpeg(300, 500)
                } else {
                    png(200, 120)
                },
            )
            .await,
        );
    }
    doomed.kill();

    // Every post becomes ready, whichever node is asked.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut images = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        loop {
            let p = read(&client, format!("{}/v1/posts/{id}", nodes[n % 2]), &token).await;
            if p["status"] == "ready" {
                images.push(p["image"]["url"].as_str().unwrap().to_owned());
                break;
            }
            assert_eq!(p["status"], "processing", "{p}");
            assert!(Instant::now() < deadline, "post {n} was lost: {p}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Each image is served by both nodes, identically; no job finished twice with another result.
    for (n, (id, url)) in ids.iter().zip(&images).enumerate() {
        let from_a = client
            .get(format!("{}{url}", nodes[0]))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let from_b = client
            .get(format!("{}{url}", nodes[1]))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(!from_a.is_empty());
        assert_eq!(from_a, from_b);
        let again = read(
            &client,
            format!("{}/v1/posts/{id}", nodes[(n + 1) % 2]),
            &token,
        )
        .await;
        assert_eq!(again["image"]["url"].as_str(), Some(url.as_str()));
    }

    // Comments alternate between nodes; counts and the last two agree everywhere.
    for n in 0..10 {
        let resp = client
            .post(format!("{}/v1/posts/{}/comments", nodes[n % 2], ids[0]))
            .bearer_auth(&token)
            .json(&json!({"body": format!("c{n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    let feeds: Vec<Value> = futures_util::future::join_all(
        nodes
            .iter()
            .map(|n| read(&client, format!("{n}/v1/posts?limit=3"), &token)),
    )
    .await;
    assert_eq!(feeds[0]["items"], feeds[1]["items"]);
    assert_eq!(feeds[0]["items"][0]["id"].as_str(), Some(ids[0].as_str()));
    assert_eq!(feeds[0]["items"][0]["comment_count"], 10);
    let last: Vec<_> = feeds[0]["items"][0]["last_comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].clone())
        .collect();
    assert_eq!(last, ["c9", "c8"]);
    // A cursor from one node pages on the other.
    let cursor = feeds[0]["next_cursor"].as_str().unwrap();
    let next = read(
        &client,
        format!("{}/v1/posts?limit=3&cursor={cursor}", nodes[1]),
        &token,
    )
    .await;
    assert_eq!(next["items"].as_array().unwrap().len(), 3);
}

/// A resumable upload whose PATCHes alternate between two API nodes still finishes.
#[tokio::test]
async fn an_upload_can_hop_between_api_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let a = Node::serve(dir.path(), &backend, &["--workers", "1"]);
    let b = Node::serve(dir.path(), &backend, &["--workers", "0"]);
    let nodes = [a.base.clone(), b.base.clone()];
    let client = reqwest::Client::new();
    let token = register_at(&nodes[0], "hopper").await;
    let image = jpeg(900, 700);
    let created = client
        .post(format!("{}/v1/uploads", nodes[1]))
        .bearer_auth(&token)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", image.len().to_string())
        .send()
        .await
        .unwrap();
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let pieces: Vec<&[u8]> = image.chunks(image.len() / 4 + 1).collect();
    let mut offset = 0;
    for (n, piece) in pieces.iter().enumerate() {
        let resp = client
            .patch(format!("{}{location}", nodes[n % 2]))
            .bearer_auth(&token)
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(piece.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "PATCH {n} on node {}", n % 2);
        offset += piece.len();
    }
    let upload_id = location.rsplit('/').next().unwrap();
    let post: Value = client
        .post(format!("{}/v1/posts", nodes[1]))
        .bearer_auth(&token)
        .json(&json!({"upload_id": upload_id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = post["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = read(&client, format!("{}/v1/posts/{id}", nodes[0]), &token).await;
        if p["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "{p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two API nodes on one new instance, trusting a checked token for 300 ms.
async fn two_api_nodes(dir: &std::path::Path) -> (Node, Node) {
    let backend = backend_args().await;
    let bound = ["--workers", "0", "--session-cache-ms", "300"];
    (
        Node::serve(dir, &backend, &bound),
        Node::serve(dir, &backend, &bound),
    )
}

async fn me_status(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Waits for the node at `base` to refuse `token`, which it trusted a moment
/// ago: the bound is 300 ms, the deadline leaves room for a slow machine.
async fn refused_within_the_bound(base: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match me_status(base, token).await {
            401 => return,
            200 if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{base} still answered {other} for a revoked token"),
        }
    }
}

/// A logout answers on the node it went through at once, and reaches the other
/// nodes (which trusted the token a moment ago) within `--session-cache-ms`.
#[tokio::test]
async fn a_logout_reaches_every_api_node_within_the_session_cache_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_api_nodes(dir.path()).await;
    let token = register_at(&a.base, "leaver").await;
    for base in [&a.base, &b.base] {
        assert_eq!(me_status(base, &token).await, 200);
    }
    let out = reqwest::Client::new()
        .delete(format!("{}/v1/sessions/current", a.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert_eq!(
        me_status(&a.base, &token).await,
        401,
        "at once where it was revoked"
    );
    refused_within_the_bound(&b.base, &token).await;
}

/// A session revoked by its id, and the sessions a password change revokes,
/// stop working on the other node within `--session-cache-ms` too.
#[tokio::test]
async fn revoked_sessions_and_password_changes_reach_every_api_node() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_api_nodes(dir.path()).await;
    let client = reqwest::Client::new();
    let keeper = register_at(&a.base, "mover").await;
    let others = [
        login_at(&a.base, "mover").await,
        login_at(&a.base, "mover").await,
    ];
    for token in others.iter().chain([&keeper]) {
        assert_eq!(
            me_status(&b.base, token).await,
            200,
            "node b trusts every token"
        );
    }

    // The first other session is revoked by its id through node a.
    let listed: Value = client
        .get(format!("{}/v1/me/sessions", a.base))
        .bearer_auth(&others[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = listed["items"].as_array().unwrap();
    let id = listed.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap();
    let revoked = client
        .delete(format!("{}/v1/me/sessions/{id}", a.base))
        .bearer_auth(&keeper)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    // The keeper changes the password through node a: the second goes too.
    let changed = client
        .put(format!("{}/v1/me/password", a.base))
        .bearer_auth(&keeper)
        .json(&json!({"current_password": "correct horse", "new_password": "moved house"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    for token in &others {
        assert_eq!(
            me_status(&a.base, token).await,
            401,
            "at once where it was revoked"
        );
        refused_within_the_bound(&b.base, token).await;
    }
    assert_eq!(
        me_status(&b.base, &keeper).await,
        200,
        "the session that changed it lives"
    );
}

/// A moderator's suspension through one node reaches the other within the
/// caches' bounds: the author's token is refused there, log-in is refused on
/// both, and their posts vanish from both.
#[tokio::test]
async fn a_suspension_reaches_every_api_node() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let a = Node::serve(
        dir.path(),
        &backend,
        &["--workers", "1", "--session-cache-ms", "300"],
    );
    let b = Node::serve(
        dir.path(),
        &backend,
        &["--workers", "0", "--session-cache-ms", "300"],
    );
    let client = reqwest::Client::new();
    let author = register_at(&a.base, "troll").await;
    let reporter = register_at(&b.base, "neighbour").await;
    let warden = register_at(&a.base, "warden").await;
    let mut admin = std::process::Command::new(env!("CARGO_BIN_EXE_imagegram"));
    admin
        .arg("admin")
        .arg("--data-dir")
        .arg(dir.path())
        .args(&backend)
        .args(["set-role", "warden", "moderator"]);
    assert!(admin.status().unwrap().success());

    let id = ready_post_at(&client, [&a.base, &b.base], &author, "trolling").await;
    let second_id = ready_post_at(&client, [&a.base, &b.base], &author, "more trolling").await;
    let filed: Value = client
        .post(format!("{}/v1/reports", b.base))
        .bearer_auth(&reporter)
        .json(&json!({"target": {"type": "post", "id": id}, "reason": "harassment"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me_status(&b.base, &author).await,
        200,
        "node b trusts the token"
    );

    let resolved = client
        .post(format!(
            "{}/v1/moderation/reports/{}/resolve",
            a.base,
            filed["id"].as_str().unwrap()
        ))
        .bearer_auth(&warden)
        .json(&json!({"action": "suspend"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resolved.status(), 200);
    assert_eq!(
        me_status(&a.base, &author).await,
        401,
        "at once where it was decided"
    );
    refused_within_the_bound(&b.base, &author).await;
    for base in [&a.base, &b.base] {
        let login = client
            .post(format!("{base}/v1/sessions"))
            .json(&json!({"username": "troll", "password": "correct horse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 403, "{base}");
    }
    // The other post is hidden on node b too, within the feed cache's bound (1 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = client
            .get(format!("{}/v1/posts/{second_id}", b.base))
            .send()
            .await
            .unwrap()
            .status();
        if status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node b still shows the post: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let feed: Value = client
        .get(format!("{}/v1/posts", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!feed.to_string().contains(&second_id), "{feed}");
}

/// Posts a small image through the node at `nodes[0]` and waits until
/// `nodes[1]` shows it ready; its id.
async fn ready_post_at(
    client: &reqwest::Client,
    nodes: [&str; 2],
    token: &str,
    caption: &str,
) -> String {
    let form = Form::new()
        .text("caption", caption.to_owned())
        .part("image", Part::bytes(png(64, 64)).file_name("t.png"));
    let made: Value = client
        .post(format!("{}/v1/posts", nodes[0]))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read(client, format!("{}/v1/posts/{id}", nodes[1]), token).await["status"] != "ready" {
        assert!(Instant::now() < deadline, "the post never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    id
}

/// A deep feed page on one API node shows every change another node made to
/// its posts: comments added and deleted, a caption edited. No node keeps
/// pages or renderings past the first page's bounded cache, and this test
/// holds any that would to it.
#[tokio::test]
async fn deep_pages_on_one_node_show_what_another_node_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    // No first-page cache on `a`: its first page, which gives the cursor,
    // is then as fresh as the deep page (the cache's bound is tested above).
    let a = Node::serve(
        dir.path(),
        &backend,
        &["--workers", "1", "--feed-cache-ms", "0"],
    );
    let b = Node::serve(dir.path(), &backend, &["--workers", "0"]);
    let client = reqwest::Client::new();
    let author = register_at(&a.base, "kept_author").await;
    let reader = register_at(&b.base, "kept_reader").await;
    let mut ids = Vec::new();
    for caption in ["top", "one", "two"] {
        ids.push(ready_post_at(&client, [&a.base, &b.base], &author, caption).await);
    }
    let comment_on = |id: String, via: &str, body: &str| {
        let (client, url, reader) = (
            client.clone(),
            format!("{via}/v1/posts/{id}/comments"),
            reader.clone(),
        );
        let body = json!({ "body": body });
        async move {
            let made = client
                .post(url)
                .bearer_auth(&reader)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(made.status(), 201);
            made.json::<Value>().await.unwrap()
        }
    };
    // Two comments keep "top" alone on the first page of one.
    for body in ["first", "second"] {
        comment_on(ids[0].clone(), &b.base, body).await;
    }
    // The page after the first post, as node `a` shows it: each item must be
    // the post as node `a` reads it alone. Returns the items' ids.
    let deep_page_is_fresh = |step: &'static str| {
        let (client, base, author) = (&client, &a.base, &author);
        async move {
            let first = read(client, format!("{base}/v1/posts?limit=1"), author).await;
            let cursor = first["next_cursor"].as_str().unwrap().to_owned();
            let path = format!("{base}/v1/posts?limit=20&cursor={cursor}");
            let page = read(client, path, author).await;
            let items = page["items"].as_array().unwrap();
            assert_eq!(items.len(), 2, "{step}: {page}");
            for item in items {
                let id = item["id"].as_str().unwrap();
                let post = read(client, format!("{base}/v1/posts/{id}"), author).await;
                assert_eq!(item, &post, "{step}");
            }
            let ids = items.iter().map(|i| i["id"].as_str().unwrap().to_owned());
            ids.collect::<Vec<_>>()
        }
    };
    let deep = deep_page_is_fresh("read on a").await;
    assert_eq!(deep, [ids[2].clone(), ids[1].clone()]);

    // A comment on b moves "one" up the deep page and changes its rendering.
    let comment = comment_on(ids[1].clone(), &b.base, "from node b").await;
    let deep = deep_page_is_fresh("commented on b").await;
    assert_eq!(deep, [ids[1].clone(), ids[2].clone()]);
    let cid = comment["id"].as_str().unwrap();
    let deleted = client
        .delete(format!("{}/v1/posts/{}/comments/{cid}", b.base, ids[1]))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    deep_page_is_fresh("comment deleted on b").await;

    let edited = client
        .patch(format!("{}/v1/posts/{}", b.base, ids[2]))
        .bearer_auth(&author)
        .json(&json!({"caption": "edited on b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(edited.status(), 200);
    deep_page_is_fresh("edited on b").await;
    let first = read(&client, format!("{}/v1/posts?limit=1", a.base), &author).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let page = read(
        &client,
        format!("{}/v1/posts?cursor={cursor}", a.base),
        &author,
    )
    .await;
    assert_eq!(page["items"][0]["caption"], "edited on b", "{page}");
}
