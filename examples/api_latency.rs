//! API latency on a seeded instance, measured over real HTTP.
//!
//! cargo run --release --features bench --example api_latency -- [POSTS] [REQUESTS]
//! BENCH_DATABASE_URL=postgres://… cargo run --release --features bench --example api_latency -- [POSTS] [REQUESTS]
//!
//! Seeds POSTS ready posts (default 100000) with skewed comment counts in an
//! embedded database (copied into PostgreSQL by `migrate` when
//! BENCH_DATABASE_URL is set), starts the API on a loopback port, then times:
//! the first feed page, random deep pages reached through real cursors, and
//! durable comment creation (one client in sequence, then 32 at once).

mod support;

use std::time::{Duration, Instant};

use support::report;

async fn timed(client: &reqwest::Client, url: &str) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let resp = client.get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    (started.elapsed(), body)
}

/// Post ids from the feed, to comment on.
async fn some_post_ids(client: &reqwest::Client, base: &str, cursors: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for cursor in cursors.iter().step_by((cursors.len() / 20).max(1)) {
        let (_, page) = timed(client, &format!("{base}/v1/posts?limit=5&cursor={cursor}")).await;
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_owned()),
        );
    }
    ids
}

async fn create_comment(client: &reqwest::Client, url: &str, token: &str, n: usize) -> Duration {
    let started = Instant::now();
    let resp = client
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({"body": format!("benchmark comment {n}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    started.elapsed()
}

async fn comment_writes(client: &reqwest::Client, base: &str, cursors: &[String], requests: usize) {
    let reg: serde_json::Value = client
        .post(format!("{base}/v1/users"))
        .json(&serde_json::json!({"username": "bench_writer", "password": "benchmark password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reg["token"].as_str().unwrap().to_owned();
    let ids = some_post_ids(client, base, cursors).await;
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("{base}/v1/posts/{id}/comments"))
        .collect();
    let mut sequential = Vec::with_capacity(requests);
    for n in 0..requests {
        sequential.push(create_comment(client, &urls[n % urls.len()], &token, n).await);
    }
    report("comment create, 1 client", sequential);

    let clients = 32;
    let per_client = requests / 4;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, urls, token) = (client.clone(), urls.clone(), token.clone());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(per_client);
            for n in 0..per_client {
                samples.push(
                    create_comment(&client, &urls[(c * 7 + n) % urls.len()], &token, n).await,
                );
            }
            samples
        });
    }
    let samples: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    let rate = samples.len() as f64 / started.elapsed().as_secs_f64();
    report(&format!("comment create, {clients} clients"), samples);
    println!("{:<28} {rate:.0} comments/s", "  throughput");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let posts: usize = args
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let requests: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2_000);
    let dir = tempfile::tempdir()?;

    let database_url = support::seeded_instance(dir.path(), 1_000, posts, 42).await?;

    let (running, base) = support::serve_in_process(dir.path(), database_url).await?;
    let client = reqwest::Client::new();

    // Warm up, then the first page.
    for _ in 0..200 {
        timed(&client, &format!("{base}/v1/posts")).await;
    }
    let mut first = Vec::with_capacity(requests);
    for _ in 0..requests {
        first.push(timed(&client, &format!("{base}/v1/posts")).await.0);
    }
    report("first page (limit 20)", first);

    // Walk the whole feed at limit 100 to collect real cursors at every depth.
    let mut cursors = Vec::new();
    let mut walk = Vec::new();
    let mut url = format!("{base}/v1/posts?limit=100");
    loop {
        let (took, body) = timed(&client, &url).await;
        walk.push(took);
        match body["next_cursor"].as_str() {
            Some(c) => {
                cursors.push(c.to_owned());
                url = format!("{base}/v1/posts?limit=100&cursor={c}");
            }
            None => break,
        }
    }
    report("full walk pages (limit 100)", walk);

    let mut deep = Vec::with_capacity(requests);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..requests {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let cursor = &cursors[(state % cursors.len() as u64) as usize];
        deep.push(
            timed(
                &client,
                &format!("{base}/v1/posts?limit=20&cursor={cursor}"),
            )
            .await
            .0,
        );
    }
    report("random deep page (limit 20)", deep);

    comment_writes(&client, &base, &cursors, requests).await;
    running.stop().await;
    Ok(())
}
