//! Server-Sent Events: what a user is told, and resuming with Last-Event-ID
//! after a dropped connection without gaps or duplicates.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use serde_json::Value;

use serde_json::json;

use crate::helpers::{Node, TestApp, backend_args, jpeg, png, problem, register_at};

pub struct Sse {
    stream: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

#[derive(Debug)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub data: Value,
}

impl Sse {
    pub async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Sse {
        Self::open_at(&app.base, token, last_event_id).await
    }

    async fn open_at(base: &str, token: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = reqwest::Client::new()
            .get(format!("{base}/v1/events"))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            stream: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, skipping heartbeat comments; None if nothing comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if kind.is_empty() {
                    continue; // a comment
                }
                return Some(Event {
                    id,
                    kind,
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??
                .unwrap();
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn authors_hear_about_their_posts_and_comments_on_them() {
    let app = TestApp::spawn().await;
    let alice = app.register("listener").await;
    let bob = app.register("talker").await;
    let mut events = Sse::open(&app, &alice, None).await;
    let post = app.ready_post(&alice, "watched").await;
    let id = post["id"].as_str().unwrap();
    let ready = events.next(WAIT).await.expect("post.ready");
    assert_eq!(ready.kind, "post.ready");
    assert_eq!(ready.data["post_id"], id);
    app.comment(&alice, id, "my own comment tells me nothing")
        .await;
    app.comment(&bob, id, "hello from bob").await;
    let comment = events.next(WAIT).await.expect("comment.created");
    assert_eq!(comment.kind, "comment.created");
    assert_eq!(comment.data["body"], "hello from bob");
    assert_eq!(comment.data["author"]["username"], "talker");
    assert!(comment.id.parse::<u64>().unwrap() > ready.id.parse::<u64>().unwrap());
    // Bob hears nothing about Alice's post.
    let mut bobs = Sse::open(&app, &bob, Some("0")).await;
    assert!(bobs.next(Duration::from_millis(1500)).await.is_none());
}

#[tokio::test]
async fn a_dropped_stream_resumes_without_gaps_or_duplicates() {
    let app = TestApp::spawn().await;
    let alice = app.register("resumer").await;
    let bob = app.register("chatter").await;
    let post = app.ready_post(&alice, "busy").await;
    let id = post["id"].as_str().unwrap();
    let mut events = Sse::open(&app, &alice, Some("0")).await;
    let first = events.next(WAIT).await.unwrap();
    assert_eq!(first.kind, "post.ready");
    drop(events); // the connection drops
    for n in 0..3 {
        app.comment(&bob, id, &format!("while you were away {n}"))
            .await;
    }
    let mut events = Sse::open(&app, &alice, Some(&first.id)).await;
    let mut bodies = Vec::new();
    let mut last = first.id.clone();
    for _ in 0..3 {
        let e = events.next(WAIT).await.unwrap();
        bodies.push(e.data["body"].as_str().unwrap().to_owned());
        last = e.id;
    }
    assert_eq!(
        bodies,
        [
            "while you were away 0",
            "while you were away 1",
            "while you were away 2"
        ]
    );
    assert!(
        events.next(Duration::from_millis(1500)).await.is_none(),
        "no duplicates"
    );
    // Without Last-Event-ID a stream starts at the present.
    let mut fresh = Sse::open(&app, &alice, None).await;
    assert!(fresh.next(Duration::from_millis(1500)).await.is_none());
    app.comment(&bob, id, "live").await;
    assert_eq!(fresh.next(WAIT).await.unwrap().data["body"], "live");
    let mut again = Sse::open(&app, &alice, Some(&last)).await;
    assert_eq!(again.next(WAIT).await.unwrap().data["body"], "live");
}

#[tokio::test]
async fn failures_are_notified_and_streams_need_auth() {
    let app = TestApp::spawn().await;
    let token = app.register("unlucky").await;
    let mut events = Sse::open(&app, &token, None).await;
    let whole = png(300, 300);
    let resp = app
        .upload(&token, &[], Some(whole[..whole.len() / 2].to_vec()))
        .await;
    let post: Value = resp.json().await.unwrap();
    assert_eq!(app.drain_jobs().await, 1);
    let failed = events.next(WAIT).await.unwrap();
    assert_eq!(failed.kind, "post.failed");
    assert_eq!(failed.data["post_id"], post["id"]);
    assert!(failed.data["failure_reason"].is_string());
    problem(app.get("/v1/events", None).await, 401).await;
    let bad = app
        .client
        .get(app.url("/v1/events"))
        .bearer_auth(&token)
        .header("last-event-id", "nope");
    problem(bad.send().await.unwrap(), 422).await;
}

/// A stream on one API node hears about changes made through another.
#[tokio::test]
async fn events_reach_streams_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let a = Node::serve(dir.path(), &backend, &["--workers", "1"]);
    let b = Node::serve(dir.path(), &backend, &["--workers", "0"]);
    let client = reqwest::Client::new();
    let alice = register_at(&a.base, "node_author").await;
    let bob = register_at(&b.base, "node_commenter").await;
    let mut events = Sse::open_at(&a.base, &alice, None).await;
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(jpeg(64, 64)).file_name("a.jpg"),
    );
    let post: Value = client
        .post(format!("{}/v1/posts", b.base))
        .bearer_auth(&alice)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = post["id"].as_str().unwrap();
    assert_eq!(events.next(WAIT).await.unwrap().kind, "post.ready");
    let resp = client
        .post(format!("{}/v1/posts/{id}/comments", b.base))
        .bearer_auth(&bob)
        .json(&json!({"body": "via node b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(events.next(WAIT).await.unwrap().data["body"], "via node b");
}

/// Comments that arrive together are written together on PostgreSQL (group
/// commit) and by the SQLite writer: each author is still told of each
/// comment on their posts exactly once, numbered without gaps, and each key
/// still replays its own comment.
#[tokio::test]
async fn comments_written_together_notify_each_author_once_without_gaps() {
    let app = TestApp::spawn().await;
    let authors = [
        app.register("gathered1").await,
        app.register("gathered2").await,
    ];
    let commenters = [
        app.register("burst1").await,
        app.register("burst2").await,
        app.register("burst3").await,
    ];
    let mut posts = Vec::new();
    for (n, author) in authors.iter().enumerate() {
        for p in 0..2 {
            posts.push((
                n,
                app.ready_post_id(author, &format!("gathered {n}.{p}"))
                    .await,
            ));
        }
    }
    let send = |n: usize| {
        let (owner, post) = posts[n % posts.len()].clone();
        let mut req = app
            .client
            .post(app.url(&format!("/v1/posts/{post}/comments")))
            .bearer_auth(&commenters[n % commenters.len()])
            .json(&json!({"body": format!("burst {n}")}));
        if n.is_multiple_of(2) {
            req = req.header("idempotency-key", format!("burst-key-{n}"));
        }
        async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 201);
            let c: Value = resp.json().await.unwrap();
            (owner, c["id"].as_str().unwrap().to_owned())
        }
    };
    let created = futures_util::future::join_all((0..48).map(send)).await;
    for (_, post) in &posts {
        let post: Value = app.get_json(&format!("/v1/posts/{post}"), None).await;
        assert_eq!(post["comment_count"], 12);
    }
    for (n, author) in authors.iter().enumerate() {
        let mut expected: Vec<&str> = created
            .iter()
            .filter(|(owner, _)| *owner == n)
            .map(|(_, id)| id.as_str())
            .collect();
        expected.sort();
        let mut events = Sse::open(&app, author, Some("0")).await;
        let mut seqs = Vec::new();
        let mut told = Vec::new();
        for _ in 0..2 + expected.len() {
            let e = events.next(WAIT).await.expect("an event for every comment");
            seqs.push(e.id.parse::<u64>().unwrap());
            if e.kind == "comment.created" {
                told.push(e.data["comment_id"].as_str().unwrap().to_owned());
            }
        }
        assert!(
            events.next(Duration::from_millis(1000)).await.is_none(),
            "no duplicates"
        );
        told.sort();
        assert_eq!(told, expected);
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "gapless: {seqs:?}"
        );
    }
    // Each key replays its own comment and writes nothing more.
    let replayed = futures_util::future::join_all((0..48).step_by(2).map(send)).await;
    for (again, (_, first)) in replayed.iter().zip(created.iter().step_by(2)) {
        assert_eq!(&again.1, first);
    }
    let post: Value = app
        .get_json(&format!("/v1/posts/{}", posts[0].1), None)
        .await;
    assert_eq!(post["comment_count"], 12);
}
