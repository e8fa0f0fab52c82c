//! The crash harness: a real `imagegram` process is killed with SIGKILL, cycle
//! after cycle, in the middle of concurrent writes — comments (with keyed
//! retries of every request whose answer was lost), deletions, posts and tus
//! PATCHes. Afterwards every acknowledged write is there, nothing deleted came
//! back, counts and last-2 are exact, every acknowledged post becomes ready,
//! no keyed request ran twice, and no acknowledged upload byte was lost.
//!
//! CI runs `IMAGEGRAM_CRASH_CYCLES` cycles (default 3) on each backend; the
//! long soak is `scripts/crash-soak` (see README, "Reliability").

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Node, backend_args, blobs_of, jpeg, register_at};

/// What the clients were told, and what they are still owed an answer for.
#[derive(Default)]
struct Ledger {
    /// Comment key → (post, comment id) once acknowledged; None while unknown.
    comments: HashMap<String, Option<(String, String)>>,
    /// Comments whose deletion was acknowledged.
    deleted: HashSet<String>,
    /// Deletions sent whose answer was lost.
    deleting: HashSet<(String, String)>,
    /// Post key → post id once acknowledged; None while unknown.
    posts: HashMap<String, Option<String>>,
    /// The tus upload: its location and the highest offset acknowledged.
    upload: Option<(String, u64)>,
    acked_writes: u64,
    lost_answers: u64,
}

struct Fixture {
    tokens: Vec<String>,
    posts: Vec<String>,
    upload_bytes: Vec<u8>,
}

fn cycles() -> usize {
    std::env::var("IMAGEGRAM_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_across_kill_9_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend_args().await;
    let flags = ["--workers", "1", "--rate-limit", "off"];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let fixture = {
        let node = Node::serve(dir.path(), &backend, &flags);
        let mut tokens = Vec::new();
        for n in 0..4 {
            tokens.push(register_at(&node.base, &format!("crasher{n}")).await);
        }
        let mut posts = Vec::new();
        for token in &tokens[..3] {
            posts.push(make_post(&client, &node.base, token, None).await.unwrap());
        }
        for (n, post) in posts.iter().enumerate() {
            wait_until_ready(&client, &node.base, &tokens[n], post).await;
        }
        Arc::new(Fixture {
            tokens,
            posts,
            upload_bytes: crate::tus_clients::noisy_png(1200, 900),
        })
    };
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let cycles = cycles();
    for cycle in 0..cycles {
        let node = Node::serve(dir.path(), &backend, &flags);
        let base = node.base.clone();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..4 {
            writers.spawn(commenter(
                client.clone(),
                base.clone(),
                fixture.clone(),
                ledger.clone(),
                cycle,
                w,
            ));
        }
        let killed = Arc::new(AtomicBool::new(false));
        writers.spawn(deleter(
            client.clone(),
            base.clone(),
            fixture.clone(),
            ledger.clone(),
            killed.clone(),
        ));
        writers.spawn(poster(
            client.clone(),
            base.clone(),
            fixture.clone(),
            ledger.clone(),
            cycle,
        ));
        writers.spawn(uploader(
            client.clone(),
            base.clone(),
            fixture.clone(),
            ledger.clone(),
        ));
        // Killed at a different moment of the load each cycle.
        tokio::time::sleep(Duration::from_millis(1200 + 337 * (cycle as u64 % 5))).await;
        drop(node); // SIGKILL
        killed.store(true, Ordering::Relaxed);
        while writers.join_next().await.is_some() {}
    }

    // A last start: settle what is owed, then check everything.
    let node = Node::serve(dir.path(), &backend, &flags);
    settle(&client, &node.base, &fixture, &ledger).await;
    let ledger = Arc::try_unwrap(ledger)
        .ok()
        .expect("the writers are done")
        .into_inner()
        .unwrap();
    verify(&client, &node.base, &fixture, &ledger).await;
    verify_upload(
        &client,
        &node.base,
        &fixture,
        &ledger,
        &blobs_of(&backend, dir.path()),
    )
    .await;
    eprintln!(
        "crash harness: {cycles} kill -9 cycles, {} acknowledged writes, {} answers lost to the kills and retried, 0 lost",
        ledger.acked_writes, ledger.lost_answers
    );
}

/// The keys in `map` still owed an answer.
fn owed<T>(map: &HashMap<String, Option<T>>, prefix: &str) -> Vec<String> {
    map.iter()
        .filter(|(k, v)| v.is_none() && k.starts_with(prefix))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Which writer (and so which user) made the comment `id`: keys start "w<n>-".
fn author_of(ledger: &Mutex<Ledger>, id: &str) -> usize {
    let l = ledger.lock().unwrap();
    let key = l
        .comments
        .iter()
        .find(|(_, v)| v.as_ref().is_some_and(|(_, c)| c == id))
        .map(|(k, _)| k.clone())
        .unwrap();
    key[1..2].parse().unwrap()
}

/// The comment a key stands for (its body is the key), sent with that key.
async fn send_comment(
    client: &reqwest::Client,
    base: &str,
    fx: &Fixture,
    key: &str,
) -> Result<reqwest::Response, reqwest::Error> {
    let writer: usize = key[1..2].parse().unwrap();
    let post = &fx.posts[key.len() % fx.posts.len()];
    client
        .post(format!("{base}/v1/posts/{post}/comments"))
        .bearer_auth(&fx.tokens[writer])
        .header("idempotency-key", key)
        .json(&json!({"body": key}))
        .send()
        .await
}

/// Comments with an Idempotency-Key; a request whose answer the kill took is
/// retried with the same key (in this cycle or the next) until it has one.
async fn commenter(
    client: reqwest::Client,
    base: String,
    fx: Arc<Fixture>,
    ledger: Arc<Mutex<Ledger>>,
    cycle: usize,
    w: usize,
) {
    let mut n = 0;
    loop {
        let owed = owed(&ledger.lock().unwrap().comments, &format!("w{w}-"));
        let key = owed.into_iter().next().unwrap_or_else(|| {
            n += 1;
            format!("w{w}-c{cycle}-{n}")
        });
        let post = &fx.posts[key.len() % fx.posts.len()];
        ledger
            .lock()
            .unwrap()
            .comments
            .entry(key.clone())
            .or_insert(None);
        match send_comment(&client, &base, &fx, &key).await {
            Ok(resp) if resp.status() == 201 => {
                let body: Value = resp.json().await.unwrap();
                let mut l = ledger.lock().unwrap();
                l.comments.insert(
                    key,
                    Some((post.clone(), body["id"].as_str().unwrap().to_owned())),
                );
                l.acked_writes += 1;
            }
            Ok(resp) if resp.status() == 409 => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(resp) => panic!("comment {key}: {}", resp.status()),
            Err(_) => {
                ledger.lock().unwrap().lost_answers += 1;
                return; // the node is gone
            }
        }
    }
}

/// Deletes acknowledged comments; a deletion whose answer was lost is sent
/// again, and then 204 or 404 are both right.
async fn deleter(
    client: reqwest::Client,
    base: String,
    fx: Arc<Fixture>,
    ledger: Arc<Mutex<Ledger>>,
    killed: Arc<AtomicBool>,
) {
    while !killed.load(Ordering::Relaxed) {
        let target = {
            let l = ledger.lock().unwrap();
            l.deleting.iter().next().cloned().or_else(|| {
                l.comments
                    .values()
                    .flatten()
                    .find(|(_, id)| !l.deleted.contains(id))
                    .cloned()
            })
        };
        let Some((post, id)) = target else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let author = author_of(&ledger, &id);
        let retried = ledger
            .lock()
            .unwrap()
            .deleting
            .contains(&(post.clone(), id.clone()));
        let sent = client
            .delete(format!("{base}/v1/posts/{post}/comments/{id}"))
            .bearer_auth(&fx.tokens[author])
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status() == 204 || (retried && resp.status() == 404) => {
                let mut l = ledger.lock().unwrap();
                l.deleting.remove(&(post, id.clone()));
                l.deleted.insert(id);
                l.acked_writes += 1;
            }
            Ok(resp) => panic!("deleting {id}: {}", resp.status()),
            Err(_) => {
                let mut l = ledger.lock().unwrap();
                l.deleting.insert((post, id));
                l.lost_answers += 1;
                return;
            }
        }
    }
}

async fn make_post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    key: Option<&str>,
) -> Result<String, reqwest::Error> {
    // A keyed retry is told to come back (409) while a killed node's claim lapses.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let form = Form::new()
            .text("caption", key.unwrap_or("fixture").to_owned())
            .part("image", Part::bytes(jpeg(32, 24)).file_name("a.jpg"));
        let mut req = client
            .post(format!("{base}/v1/posts"))
            .bearer_auth(token)
            .multipart(form);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let resp = req.send().await?;
        if resp.status() == 409 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert!(resp.status().is_success(), "post: {}", resp.status());
        let body: Value = resp.json().await?;
        return Ok(body["id"].as_str().unwrap().to_owned());
    }
}

/// Posts with an Idempotency-Key, retried like comments.
async fn poster(
    client: reqwest::Client,
    base: String,
    fx: Arc<Fixture>,
    ledger: Arc<Mutex<Ledger>>,
    cycle: usize,
) {
    let mut n = 0;
    loop {
        let owed = {
            let l = ledger.lock().unwrap();
            l.posts
                .iter()
                .find(|(_, v)| v.is_none())
                .map(|(k, _)| k.clone())
        };
        let key = owed.unwrap_or_else(|| {
            n += 1;
            format!("p{cycle}-{n}")
        });
        ledger
            .lock()
            .unwrap()
            .posts
            .entry(key.clone())
            .or_insert(None);
        match make_post(&client, &base, &fx.tokens[0], Some(&key)).await {
            Ok(id) => {
                let mut l = ledger.lock().unwrap();
                l.posts.insert(key, Some(id));
                l.acked_writes += 1;
            }
            Err(_) => {
                ledger.lock().unwrap().lost_answers += 1;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One resumable upload, appended in pieces; after each kill it resumes from
/// HEAD, which must never be behind an acknowledged offset.
async fn uploader(
    client: reqwest::Client,
    base: String,
    fx: Arc<Fixture>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let token = &fx.tokens[1];
    let total = fx.upload_bytes.len();
    let upload = ledger.lock().unwrap().upload.clone();
    let (location, acked) = match upload {
        Some(u) => u,
        None => {
            let Ok(created) = client
                .post(format!("{base}/v1/uploads"))
                .bearer_auth(token)
                .header("tus-resumable", "1.0.0")
                .header("upload-length", total.to_string())
                .send()
                .await
            else {
                return;
            };
            let location = created.headers()["location"].to_str().unwrap().to_owned();
            ledger.lock().unwrap().upload = Some((location.clone(), 0));
            (location, 0)
        }
    };
    let Ok(head) = client
        .head(format!("{base}{location}"))
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
    else {
        return;
    };
    let mut offset: u64 = head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        offset >= acked,
        "acknowledged upload bytes were lost: {offset} < {acked}"
    );
    while (offset as usize) < total {
        let end = (offset as usize + 200_000).min(total);
        let sent = client
            .patch(format!("{base}{location}"))
            .bearer_auth(token)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(fx.upload_bytes[offset as usize..end].to_vec())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status() == 204 => {
                offset = resp.headers()["upload-offset"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let mut l = ledger.lock().unwrap();
                l.upload = Some((location.clone(), offset));
                l.acked_writes += 1;
            }
            Ok(resp) => panic!("PATCH: {}", resp.status()),
            Err(_) => {
                ledger.lock().unwrap().lost_answers += 1;
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Retries everything still owed an answer, on the last node.
async fn settle(
    client: &reqwest::Client,
    base: &str,
    fx: &Arc<Fixture>,
    ledger: &Arc<Mutex<Ledger>>,
) {
    let keys = owed(&ledger.lock().unwrap().comments, "");
    for key in keys {
        let post = &fx.posts[key.len() % fx.posts.len()];
        // A claim whose node was killed is taken over when its lease lapses
        // (seconds); until then the retry is told to come back.
        let deadline = Instant::now() + Duration::from_secs(15);
        let resp = loop {
            let resp = send_comment(client, base, fx, &key).await.unwrap();
            if resp.status() != 409 {
                break resp;
            }
            assert!(Instant::now() < deadline, "{key} still in flight");
            assert!(resp.headers().contains_key("retry-after"));
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        assert_eq!(resp.status(), 201, "retry of {key}");
        let body: Value = resp.json().await.unwrap();
        ledger.lock().unwrap().comments.insert(
            key,
            Some((post.clone(), body["id"].as_str().unwrap().to_owned())),
        );
    }
    let deleting: Vec<_> = ledger.lock().unwrap().deleting.drain().collect();
    for (post, id) in deleting {
        let w = author_of(ledger, &id);
        let resp = client
            .delete(format!("{base}/v1/posts/{post}/comments/{id}"))
            .bearer_auth(&fx.tokens[w])
            .send()
            .await
            .unwrap();
        assert!([204, 404].contains(&resp.status().as_u16()));
        ledger.lock().unwrap().deleted.insert(id);
    }
    let keys = owed(&ledger.lock().unwrap().posts, "");
    for key in keys {
        let id = make_post(client, base, &fx.tokens[0], Some(&key))
            .await
            .unwrap();
        ledger.lock().unwrap().posts.insert(key, Some(id));
    }
    uploader(client.clone(), base.to_owned(), fx.clone(), ledger.clone()).await;
}

/// GET `url` (with `token`, if given) as JSON.
async fn get_json(client: &reqwest::Client, url: String, token: Option<&str>) -> Value {
    let mut req = client.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Every item of a paginated listing.
async fn all_pages(client: &reqwest::Client, listing: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(client, format!("{listing}?limit=100{cursor}"), None).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return items,
        }
    }
}

async fn verify(client: &reqwest::Client, base: &str, fx: &Fixture, ledger: &Ledger) {
    // Comments: every acknowledged one is there unless its deletion was
    // acknowledged; nothing deleted came back; each key made exactly one.
    let mut bodies: HashMap<String, usize> = HashMap::new();
    let mut present = HashSet::new();
    for post in &fx.posts {
        let comments = all_pages(client, &format!("{base}/v1/posts/{post}/comments")).await;
        for c in &comments {
            *bodies
                .entry(c["body"].as_str().unwrap().to_owned())
                .or_default() += 1;
            present.insert(c["id"].as_str().unwrap().to_owned());
        }
        let shown = get_json(client, format!("{base}/v1/posts/{post}"), None).await;
        assert_eq!(
            shown["comment_count"],
            comments.len(),
            "exact count of {post}"
        );
        let last: Vec<&Value> = shown["last_comments"].as_array().unwrap().iter().collect();
        let newest: Vec<&Value> = comments.iter().take(2).collect();
        assert_eq!(last, newest, "exact last-2 of {post}");
    }
    for (key, acked) in &ledger.comments {
        let (_, id) = acked.as_ref().expect("settled");
        if ledger.deleted.contains(id) {
            assert!(!present.contains(id), "deleted comment {id} came back");
        } else {
            assert!(present.contains(id), "acknowledged comment {key} was lost");
        }
        assert!(
            bodies.get(key).copied().unwrap_or(0) <= 1,
            "{key} ran twice"
        );
    }
    // Posts: every one becomes ready (the last node works off the backlog the
    // kills left, and must keep making progress), and each key made one post.
    let mut waiting: Vec<&String> = ledger
        .posts
        .values()
        .map(|id| id.as_ref().expect("settled"))
        .collect();
    let mut progress = Instant::now();
    while !waiting.is_empty() {
        let before = waiting.len();
        let mut still = Vec::new();
        for id in waiting {
            let url = format!("{base}/v1/posts/{id}");
            let post = get_json(client, url, Some(&fx.tokens[0])).await;
            assert_ne!(post["status"], "failed", "{post}");
            if post["status"] != "ready" {
                still.push(id);
            }
        }
        waiting = still;
        if waiting.len() < before {
            progress = Instant::now();
        }
        assert!(
            progress.elapsed() < Duration::from_secs(60),
            "{} posts stopped becoming ready",
            waiting.len()
        );
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mine = all_pages(client, &format!("{base}/v1/users/crasher0/posts")).await;
    let captions: Vec<&str> = mine
        .iter()
        .map(|p| p["caption"].as_str().unwrap())
        .collect();
    for key in ledger.posts.keys() {
        assert_eq!(
            captions.iter().filter(|c| **c == key.as_str()).count(),
            1,
            "post {key} exists exactly once"
        );
    }
}

/// The resumed upload is complete and holds exactly the bytes sent, once each.
async fn verify_upload(
    client: &reqwest::Client,
    base: &str,
    fx: &Fixture,
    ledger: &Ledger,
    blobs: &std::sync::Arc<dyn imagegram::store::BlobStore>,
) {
    let (location, offset) = ledger.upload.as_ref().expect("an upload was made");
    assert_eq!(*offset as usize, fx.upload_bytes.len());
    let upload_id = location.rsplit('/').next().unwrap();
    let resp = client
        .post(format!("{base}/v1/posts"))
        .bearer_auth(&fx.tokens[1])
        .json(&json!({"upload_id": upload_id}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let post: Value = resp.json().await.unwrap();
    let id = post["id"].as_str().unwrap();
    wait_until_ready(client, base, &fx.tokens[1], id).await;
    let stored = blobs
        .get(&format!("originals/{id}"))
        .await
        .unwrap()
        .unwrap();
    assert!(
        Sha256::digest(&stored) == Sha256::digest(&fx.upload_bytes),
        "the resumed upload's bytes are exact"
    );
}
async fn wait_until_ready(client: &reqwest::Client, base: &str, token: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let post = get_json(client, format!("{base}/v1/posts/{id}"), Some(token)).await;
        assert_ne!(post["status"], "failed", "{post}");
        if post["status"] == "ready" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "post {id} never became ready: {post}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
