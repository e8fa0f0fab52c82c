//! The cost of deleting a large account, and what the rest of the service
//! feels meanwhile.
//!
//! cargo run --release --features bench --example account_deletion -- [POSTS] [COMMENTS]
//! BENCH_DATABASE_URL=postgres://…/empty_db cargo run --release --features bench --example account_deletion
//!
//! Seeds POSTS ready posts (default 5,000) by 100 users in an embedded database
//! (copied into PostgreSQL by `migrate` when BENCH_DATABASE_URL names an empty
//! database), starts the API on a loopback port, and has one account write
//! COMMENTS comments (default 10,000) spread over all the posts. Then, while
//! another account writes comments as fast as 4 clients can, the account is
//! deleted (`DELETE /v1/me`) and purged (`purge_deleted_accounts`, as the
//! sweeper runs it). Printed: the deletion request's latency, the purge's time
//! and rate, the other writer's latency before and during the purge, and a
//! check that every post's count equals its comments afterwards.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{register, report};

async fn all_post_ids(client: &reqwest::Client, base: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut url = format!("{base}/v1/posts?limit=100");
    loop {
        let page: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("{base}/v1/posts?limit=100&cursor={c}"),
            None => return ids,
        }
    }
}

/// `n` comments by `token` over `posts`, 16 at a time.
async fn comment_many(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    posts: &[String],
    n: usize,
) {
    let posts = Arc::new(posts.to_vec());
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..16 {
        let (client, base, token, posts) = (
            client.clone(),
            base.to_owned(),
            token.to_owned(),
            posts.clone(),
        );
        tasks.spawn(async move {
            for i in (c..n).step_by(16) {
                let post = &posts[i % posts.len()];
                let resp = client
                    .post(format!("{base}/v1/posts/{post}/comments"))
                    .bearer_auth(&token)
                    .json(&json!({"body": format!("comment {i} by the leaving account")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
            }
        });
    }
    tasks.join_all().await;
}

/// Comment creations by `token` on 4 clients until `stop`: each one's latency.
fn writer(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    posts: &[String],
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinSet<Vec<(Instant, Duration)>> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..4usize {
        let (client, base, token, stop) = (
            client.clone(),
            base.to_owned(),
            token.to_owned(),
            stop.clone(),
        );
        let posts = posts.to_vec();
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let post = &posts[(i * 7919) % posts.len()];
                let started = Instant::now();
                let resp = client
                    .post(format!("{base}/v1/posts/{post}/comments"))
                    .bearer_auth(&token)
                    .json(&json!({"body": "meanwhile"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
                samples.push((started, started.elapsed()));
                i += 4;
            }
            samples
        });
    }
    tasks
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let posts: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5_000);
    let comments: usize = args
        .get(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let dir = tempfile::tempdir()?;
    let database_url = support::seeded_instance(dir.path(), 100, posts, 7).await?;
    let (running, base) = support::serve_in_process(dir.path(), database_url).await?;
    let client = reqwest::Client::new();
    let ids = all_post_ids(&client, &base).await;

    let leaving = register(&client, &base, "leaving").await;
    let started = Instant::now();
    comment_many(&client, &base, &leaving, &ids, comments).await;
    println!(
        "the leaving account wrote {comments} comments over {} posts in {:.1?}",
        ids.len().min(comments),
        started.elapsed()
    );

    let other = register(&client, &base, "staying").await;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writer(&client, &base, &other, &ids, stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deletion_started = Instant::now();
    let resp = client
        .delete(format!("{base}/v1/me"))
        .bearer_auth(&leaving)
        .json(&json!({"password": "benchmark password"}))
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    let request = deletion_started.elapsed();
    let purge_started = Instant::now();
    let purged = running.services.purge_deleted_accounts().await?;
    let purge = purge_started.elapsed();
    let purge_ended = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let samples: Vec<(Instant, Duration)> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(purged, 1);

    println!("DELETE /v1/me answered in {request:.1?} (everything hidden from then on)");
    println!(
        "purge: {comments} comments and the account in {purge:.2?} = {:.0} comments/s",
        comments as f64 / purge.as_secs_f64()
    );
    let before: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at < deletion_started)
        .map(|(_, d)| *d)
        .collect();
    let during: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at >= purge_started && *at < purge_ended)
        .map(|(_, d)| *d)
        .collect();
    report("other writer, before", before);
    report("other writer, during the purge", during);

    // Every post's count is what its comments are, and no comment of the
    // account is left.
    let mut mismatched = 0;
    for id in &ids {
        let post: Value = client
            .get(format!("{base}/v1/posts/{id}"))
            .send()
            .await?
            .json()
            .await?;
        let listed: Value = client
            .get(format!("{base}/v1/posts/{id}/comments?limit=100"))
            .send()
            .await?
            .json()
            .await?;
        let items = listed["items"].as_array().unwrap();
        let complete = listed["next_cursor"].is_null();
        if complete && post["comment_count"].as_u64() != Some(items.len() as u64) {
            mismatched += 1;
        }
        if items.iter().any(|c| c["author"]["username"] == "leaving") {
            mismatched += 1;
        }
    }
    println!("posts whose count or comments are off after the purge: {mismatched}");
    running.stop().await;
    Ok(())
}
