//! `imagegram migrate`: an embedded instance copied to the suite's backend,
//! interrupted once and resumed, must read back identically.

use std::process::Command;

use imagegram::config::parse_blob_url;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Node, TestApp, backend_urls, png};

fn migrate(args: &[String]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imagegram"))
        .arg("migrate")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_embedded_instance_migrates_completely_and_resumably() {
    // The source is always the embedded default.
    let source = TestApp::spawn_with(|a| {
        a.database_url = None;
        a.blob_url = None;
    })
    .await;
    let alice = source.register("alice").await;
    let bob = source.register("bob").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        // The first, at the top of the feed, with the longest caption: on
        // PostgreSQL its rendering is too long for the feed index (0019).
        let caption = match n {
            0 => crate::helpers::widest_text(2_200),
            _ => format!("post {n}"),
        };
        ids.push(
            source.ready_post(&alice, &caption).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let original = png(90, 60);
    let p: Value = source
        .upload(&bob, &[("caption", "bob's")], Some(original.clone()))
        .await
        .json()
        .await
        .unwrap();
    let bobs = p["id"].as_str().unwrap().to_owned();
    source.wait_for_status(&bob, &bobs, "ready").await;
    let whole = png(400, 400);
    let broken = whole[..whole.len() / 2].to_vec(); // readable header, damaged pixels
    let p: Value = source
        .upload(&bob, &[], Some(broken))
        .await
        .json()
        .await
        .unwrap();
    let failed = p["id"].as_str().unwrap().to_owned();
    source.wait_for_status(&bob, &failed, "failed").await;
    for n in 0..5 {
        source
            .comment(
                if n % 2 == 0 { &bob } else { &alice },
                &ids[0],
                &format!("c{n}"),
            )
            .await;
    }
    let gone: Value = source
        .comment(&bob, &ids[1], "to delete")
        .await
        .json()
        .await
        .unwrap();
    source
        .delete(
            &format!(
                "/v1/posts/{}/comments/{}",
                ids[1],
                gone["id"].as_str().unwrap()
            ),
            &bob,
        )
        .await;

    let mut before = Vec::new();
    for id in ids.iter().chain([&bobs, &failed]) {
        before.push(
            source
                .get_json(&format!("/v1/posts/{id}"), Some(&bob))
                .await,
        );
        before.push(
            source
                .get_json(&format!("/v1/posts/{id}/comments"), Some(&bob))
                .await,
        );
    }
    let feed = source.get_json("/v1/posts?limit=2", None).await;
    let source_dir = source.data_dir.clone();
    let _keep = source; // its data dir lives as long as the test

    let target_dir = tempfile::tempdir().unwrap();
    let target_args: Vec<String> = match backend_urls().await {
        Some((db, blobs)) => vec![
            "--to-database-url".into(),
            db,
            "--to-blob-url".into(),
            blobs,
        ],
        None => vec!["--to".into(), target_dir.path().display().to_string()],
    };
    let mut args = vec![
        "--from".to_owned(),
        source_dir.display().to_string(),
        "--batch-size".into(),
        "2".into(),
    ];
    args.extend(target_args.iter().cloned());

    let mut interrupted = args.clone();
    interrupted.extend(["--stop-after-rows".to_owned(), "5".to_owned()]);
    let out = migrate(&interrupted);
    assert!(
        !out.status.success(),
        "the interrupted run reports it did not finish"
    );
    let target_db = target_args
        .iter()
        .position(|a| a == "--to-database-url")
        .map(|i| target_args[i + 1].clone());
    if let Some(db) = &target_db {
        // Its indexes are set aside until the copy ends: no node serves it.
        let refusal = serve_and_fail(&["--database-url", db, "--blob-url", &target_args[3]]);
        assert!(
            refusal.contains("unfinished `imagegram migrate`"),
            "{refusal}"
        );
    }
    let out = migrate(&args);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("already copied"), "{log}");
    assert!(log.contains("migration complete and verified"), "{log}");
    if let Some(db) = &target_db {
        assert_eq!(
            schema_objects(db).await,
            schema_objects(&backend_urls().await.unwrap().0).await,
            "the copy's target has every index and foreign key a new database has"
        );
    }
    // Running it again changes nothing and still verifies.
    assert!(migrate(&args).status.success());

    // A node on the target serves exactly what the source served.
    let backend: Vec<String> = target_args
        .iter()
        .map(|a| {
            a.replace("--to-database-url", "--database-url")
                .replace("--to-blob-url", "--blob-url")
        })
        .filter(|a| a != "--to")
        .filter(|a| *a != target_dir.path().display().to_string())
        .collect();
    let node = Node::serve(target_dir.path(), &backend, &["--workers", "1"]);
    let client = reqwest::Client::new();
    let get = |path: String, token: Option<&str>| {
        let mut req = client.get(format!("{}{path}", node.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    let mut after = Vec::new();
    for id in ids.iter().chain([&bobs, &failed]) {
        after.push(
            get(format!("/v1/posts/{id}"), Some(&bob))
                .await
                .json::<Value>()
                .await
                .unwrap(),
        );
        after.push(
            get(format!("/v1/posts/{id}/comments"), Some(&bob))
                .await
                .json::<Value>()
                .await
                .unwrap(),
        );
    }
    assert_eq!(before, after);
    assert_eq!(
        get("/v1/posts?limit=2".into(), None)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        feed
    );
    // Cursors, sessions and passwords carry over.
    let cursor = feed["next_cursor"].as_str().unwrap();
    assert_eq!(
        get(format!("/v1/posts?limit=2&cursor={cursor}"), None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/v1/me".into(), Some(&alice)).await.status(),
        StatusCode::OK
    );
    let login = client
        .post(format!("{}/v1/sessions", node.base))
        .json(&json!({"username": "bob", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::CREATED);
    // Derived images and originals are byte-identical.
    for post in before.iter().step_by(2).filter(|p| p["status"] == "ready") {
        let url = post["image"]["url"].as_str().unwrap();
        let a = reqwest::get(format!("{}{url}", _keep.base))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let b = get(url.to_owned(), None).await.bytes().await.unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }
    let blob_url = backend
        .iter()
        .position(|a| a == "--blob-url")
        .map(|i| backend[i + 1].clone())
        .unwrap_or_else(|| format!("file://{}/blobs", target_dir.path().display()));
    let blobs = imagegram::app::open_blobs(&parse_blob_url(&blob_url).unwrap()).unwrap();
    assert_eq!(
        blobs
            .get(&format!("originals/{bobs}"))
            .await
            .unwrap()
            .unwrap(),
        original
    );

    // The copy takes writes like any instance: every counter carried over.
    writes_after_migrating(&client, &node.base, &alice, &bob, &ids[0]).await;
}

/// Runs `imagegram serve` on `backend`, which must refuse to start; what it said.
fn serve_and_fail(backend: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagegram"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
            "--data-dir",
        ])
        .arg(dir.path())
        .args(backend)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            assert!(!out.status.success(), "it started");
            return String::from_utf8_lossy(&out.stderr).into_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("it kept running for a minute");
}

/// The names of every index and foreign key of a PostgreSQL database, after
/// its migrations ran (opening it runs them).
async fn schema_objects(database: &str) -> Vec<String> {
    use sqlx::Connection;
    let url = imagegram::config::parse_database_url(database).unwrap();
    drop(imagegram::app::open_store(&url).await.unwrap());
    let mut conn = sqlx::PgConnection::connect(database).await.unwrap();
    sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' \
         UNION ALL SELECT conname::text || ' ' || pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE connamespace = 'public'::regnamespace ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// A comment that notifies a user who already had events, a new post that
/// becomes ready, and an event stream resumed from the start: each needs the
/// per-user event sequence, which a copy once forgot.
async fn writes_after_migrating(
    client: &reqwest::Client,
    base: &str,
    alice: &str,
    bob: &str,
    alices_post: &str,
) {
    let resp = client
        .post(format!("{base}/v1/posts/{alices_post}/comments"))
        .bearer_auth(bob)
        .json(&json!({"body": "written on the copy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let form = reqwest::multipart::Form::new()
        .text("caption", "posted on the copy")
        .part(
            "image",
            reqwest::multipart::Part::bytes(png(40, 30)).file_name("a.png"),
        );
    let post: Value = client
        .post(format!("{base}/v1/posts"))
        .bearer_auth(bob)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = post["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now: Value = client
            .get(format!("{base}/v1/posts/{id}"))
            .bearer_auth(bob)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if now["status"] == "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Alice's stream, resumed from the start, holds the copied events and the new one, in order.
    let mut stream = client
        .get(format!("{base}/v1/events"))
        .bearer_auth(alice)
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("written on the copy") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
            .await
            .expect("events arrive")
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ids: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id:"))
        .map(|v| v.trim().parse().unwrap())
        .collect();
    assert!(ids.len() >= 3, "{text}");
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
}

/// `migrate` copies what `TABLES` lists; a column a PostgreSQL migration adds but
/// the list lacks would be lost in every copy to or from PostgreSQL (the SQLite
/// schema has the same check as a unit test). Rate-limit state is not copied:
/// it is kept in memory by the embedded default and is worthless after a move;
/// `migrate_set_aside` is the copy's own note of what it set aside.
#[tokio::test]
async fn the_copy_covers_every_table_and_column_of_the_postgres_schema() {
    use std::collections::BTreeSet;

    use imagegram::store::transfer::TABLES;
    use sqlx::Connection;

    let Some((database, _)) = backend_urls().await else {
        eprintln!("the embedded backend's schema is checked by a unit test");
        return;
    };
    // A node runs the migrations.
    let dir = tempfile::tempdir().unwrap();
    let _node = Node::serve(
        dir.path(),
        &["--database-url".into(), database.clone()],
        &["--workers", "0"],
    );
    let mut conn = sqlx::PgConnection::connect(&database).await.unwrap();
    // posts.rendered_long is where PostgreSQL keeps a `rendered` too long
    // for the feed index (migration 0019): read and written as `rendered`.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name NOT IN ('_sqlx_migrations', 'rate_limits', 'migrate_set_aside') \
           AND (table_name, column_name) <> ('posts', 'rendered_long')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let schema: BTreeSet<(String, String)> = rows.into_iter().collect();
    let copied: BTreeSet<(String, String)> = TABLES
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(|(c, _)| (t.name.to_owned(), (*c).to_owned()))
        })
        .collect();
    assert_eq!(
        schema, copied,
        "(table, column) in PostgreSQL vs. what migrate copies"
    );
}
