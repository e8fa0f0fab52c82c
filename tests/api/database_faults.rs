//! The database's side of the network failing: PostgreSQL's connection cut in
//! the middle of a batch of comments (`crates/store/src/postgres/batches.rs`),
//! by the fault proxy between the node and the database, before the batch's
//! commit reaches the server and after it (when the server has committed but
//! the node never hears so). Each comment must be answered and written
//! exactly once, its author told of it once, without gaps, and a keyed retry
//! must replay its answer. The embedded database has no connection to lose.

use fault_proxy::PgCut;
use serde_json::{Value, json};

use crate::events::Sse;
use crate::helpers::{Backend, backend};
use crate::statements::proxied_node;

/// A node behind the fault proxy, its database link proxied, and a post by
/// `author` with three users to comment on it.
struct Scene {
    app: crate::helpers::TestApp,
    proxy: fault_proxy::FaultProxy,
    author: String,
    commenters: [String; 3],
    post: String,
}

impl Scene {
    /// Users are named after `prefix`, so scenes in one database do not meet.
    async fn new(prefix: &str) -> Scene {
        let (app, proxy) = proxied_node(false).await;
        let author = app.register(&format!("{prefix}_author")).await;
        let commenters = [
            app.register(&format!("{prefix}_one")).await,
            app.register(&format!("{prefix}_two")).await,
            app.register(&format!("{prefix}_three")).await,
        ];
        let post = app
            .ready_post_id(&author, &format!("{prefix}: cut off"))
            .await;
        Scene {
            app,
            proxy,
            author,
            commenters,
            post,
        }
    }
}

/// The batch's write statement, as its SQL reads (`comment_batches.rs`).
const BATCH_WRITE: &str = "comment AS (INSERT INTO comments";

#[tokio::test]
async fn a_comment_batch_cut_off_from_postgresql_is_answered_and_written_once() {
    if backend() != Backend::PostgresS3 {
        return;
    }
    for when in [PgCut::BeforeCommit, PgCut::AfterCommit] {
        cut_batch_then_retry(when).await;
    }
}

async fn cut_batch_then_retry(when: PgCut) {
    let Scene {
        app,
        proxy,
        author,
        commenters,
        post,
    } = Scene::new("cut").await;
    const COMMENTS: usize = 12;
    let send = |n: usize| {
        app.client
            .post(app.url(&format!("/v1/posts/{post}/comments")))
            .bearer_auth(&commenters[n % commenters.len()])
            .header("idempotency-key", format!("cut-key-{n}"))
            .json(&json!({"body": format!("cut {n}")}))
            .send()
    };
    proxy.cut_postgres_statement(BATCH_WRITE, when);
    let first = futures_util::future::join_all((0..COMMENTS).map(send)).await;
    assert_eq!(proxy.postgres_cuts(), 1, "{when:?}: the cut happened");
    // The node recovers on its own: the cut batch's comments are written
    // again under the row lock (or, committed before the cut, found there),
    // on a connection that works; no client sees the fault.
    let mut ids = Vec::new();
    for resp in first {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), 201, "{when:?}");
        let c: Value = resp.json().await.unwrap();
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    // Retries replay the answers: nothing is written twice.
    for (n, id) in ids.iter().enumerate() {
        let resp = send(n).await.unwrap();
        assert_eq!(resp.status(), 201, "{when:?}");
        assert_eq!(resp.headers()["idempotent-replayed"], "true");
        let c: Value = resp.json().await.unwrap();
        assert_eq!(c["id"], id.as_str(), "{when:?}");
    }

    let p = app.get_json(&format!("/v1/posts/{post}"), None).await;
    assert_eq!(p["comment_count"], COMMENTS, "{when:?}: {p}");
    let listed = app
        .get_json(&format!("/v1/posts/{post}/comments?limit=100"), None)
        .await;
    let mut listed: Vec<String> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut answered = ids.clone();
    answered.sort();
    answered.dedup();
    assert_eq!(listed, answered, "{when:?}: each comment exactly once");

    // The post's author is told of each once, numbered without gaps (the
    // first event is the post's `post.ready`).
    let mut events = Sse::open(&app, &author, Some("0")).await;
    let mut seqs = Vec::new();
    let mut told = Vec::new();
    for _ in 0..1 + COMMENTS {
        let e = events
            .next(std::time::Duration::from_secs(20))
            .await
            .expect("an event for every comment");
        seqs.push(e.id.parse::<u64>().unwrap());
        if e.kind == "comment.created" {
            told.push(e.data["comment_id"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        events
            .next(std::time::Duration::from_millis(500))
            .await
            .is_none(),
        "{when:?}: no duplicates"
    );
    told.sort();
    assert_eq!(told, answered, "{when:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "gapless: {seqs:?}"
    );
}

/// The deletion batch's write statement, as its SQL reads (`rows.rs`).
const DELETION_WRITE: &str = "gone AS (DELETE FROM comments";

/// Deletions cut off the same two ways: each comment is deleted once, the
/// count and the newest two stay exact. Cut before the commit, every
/// deletion is redone under the row lock and answered 204; cut after it,
/// a deletion found already done under the row lock is answered 404 (it
/// leaves nothing to tell it was this request's own; see README).
#[tokio::test]
async fn a_deletion_batch_cut_off_from_postgresql_deletes_each_once() {
    if backend() != Backend::PostgresS3 {
        return;
    }
    for when in [PgCut::BeforeCommit, PgCut::AfterCommit] {
        cut_deletions(when).await;
    }
}

async fn cut_deletions(when: PgCut) {
    let Scene {
        app,
        proxy,
        commenters,
        post,
        ..
    } = Scene::new("del").await;
    // Oldest first: (id, body, whose).
    let mut comments = Vec::new();
    for n in 0..12 {
        let token = &commenters[n % commenters.len()];
        let resp = app.comment(token, &post, &format!("del {n}")).await;
        assert_eq!(resp.status(), 201);
        let c: Value = resp.json().await.unwrap();
        comments.push((
            c["id"].as_str().unwrap().to_owned(),
            format!("del {n}"),
            token,
        ));
    }
    // The newest two (their post's newest are refilled) and four older.
    let doomed = [11, 10, 7, 5, 2, 0];
    let path = |id: &str| format!("/v1/posts/{post}/comments/{id}");
    proxy.cut_postgres_statement(DELETION_WRITE, when);
    let paths: Vec<String> = doomed.iter().map(|&n| path(&comments[n].0)).collect();
    let answers = futures_util::future::join_all(
        doomed
            .iter()
            .zip(&paths)
            .map(|(&n, at)| app.delete(at, comments[n].2)),
    )
    .await;
    assert_eq!(proxy.postgres_cuts(), 1, "{when:?}: the cut happened");
    for (n, resp) in doomed.iter().zip(answers) {
        let status = resp.status().as_u16();
        match when {
            PgCut::BeforeCommit => assert_eq!(status, 204, "{when:?}: comment {n}"),
            PgCut::AfterCommit => assert!([204, 404].contains(&status), "{when:?}: {status}"),
        }
    }
    for &n in &doomed {
        let again = app.delete(&path(&comments[n].0), comments[n].2).await;
        assert_eq!(again.status(), 404, "{when:?}: comment {n} is gone");
    }

    let left: Vec<&(String, String, &String)> = comments
        .iter()
        .enumerate()
        .filter(|(n, _)| !doomed.contains(n))
        .map(|(_, c)| c)
        .collect();
    let p = app.get_json(&format!("/v1/posts/{post}"), None).await;
    assert_eq!(p["comment_count"], left.len(), "{when:?}: {p}");
    let newest: Vec<&str> = left.iter().rev().take(2).map(|c| c.1.as_str()).collect();
    assert_eq!(
        crate::helpers::comment_bodies(&p["last_comments"]),
        newest,
        "{when:?}"
    );
    let listed = app
        .get_json(&format!("/v1/posts/{post}/comments?limit=100"), None)
        .await;
    let listed: Vec<String> = crate::helpers::comment_bodies(&listed["items"]);
    let expected: Vec<&str> = left.iter().rev().map(|c| c.1.as_str()).collect();
    assert_eq!(
        listed, expected,
        "{when:?}: each deleted once, the rest kept"
    );
}

/// The statement that reads a batch of feed pages (`read_batches.rs`), as
/// its SQL reads.
const PAGE_READ: &str = "SELECT w.ord, p.id, p.comment_count";

/// The link to PostgreSQL cut while a deep page is read: that request fails
/// with a problem, and the next read of the page is exact, each item the post
/// as it is, on a connection that works. One post on the page has a rendering
/// too long for the feed index (read beside it, in the same statement).
#[tokio::test]
async fn a_deep_page_cut_off_from_postgresql_fails_cleanly_and_the_next_is_exact() {
    if backend() != Backend::PostgresS3 {
        return;
    }
    let Scene {
        app, proxy, author, ..
    } = Scene::new("page_cut").await;
    for i in 0..3 {
        app.ready_post_id(&author, &format!("page_cut {i}")).await;
    }
    let first: Value = app.get_json("/v1/posts?limit=1", None).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let deep = format!("/v1/posts?limit=20&cursor={cursor}");
    let page: Value = app.get_json(&deep, None).await;
    let items = page["items"].as_array().unwrap();
    let captions: Vec<String> = (0..items.len())
        .map(|i| match i {
            0 => crate::helpers::widest_text(2_200),
            _ => format!("edited before the cut {i}"),
        })
        .collect();
    for (item, caption) in items.iter().zip(&captions) {
        app.edit_caption(&author, item["id"].as_str().unwrap(), caption)
            .await;
    }

    proxy.cut_postgres_statement(PAGE_READ, PgCut::BeforeCommit);
    let cut = app.get(&deep, None).await;
    assert_eq!(proxy.postgres_cuts(), 1, "the cut happened");
    assert!(cut.status().is_server_error(), "{}", cut.status());
    assert_eq!(cut.headers()["content-type"], "application/problem+json");

    let page: Value = app.get_json(&deep, None).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{page}");
    for (item, caption) in items.iter().zip(&captions) {
        assert_eq!(item["caption"], caption.as_str(), "{page}");
        let id = item["id"].as_str().unwrap();
        let post: Value = app.get_json(&format!("/v1/posts/{id}"), None).await;
        assert_eq!(item, &post);
    }
}
