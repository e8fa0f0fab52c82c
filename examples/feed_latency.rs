//! Feed latency on a seeded embedded database, measured over real HTTP.
//!
//! cargo run --release --example feed_latency -- [POSTS] [REQUESTS]
//!
//! Seeds POSTS ready posts (default 100000) with skewed comment counts, starts
//! the API on a loopback port, then times sequential requests from one client:
//! the first feed page, and random deep pages reached through real cursors.

use std::time::{Duration, Instant};

use imagegram::config::ServerArgs;
use imagegram::store::sqlite::SqliteStore;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<28} n={:<6} p50={:>8.3?} p99={:>8.3?} p99.9={:>8.3?} max={:>8.3?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples[samples.len() - 1]
    );
}

async fn timed(client: &reqwest::Client, url: &str) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let resp = client.get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let body: serde_json::Value = resp.json().await.unwrap();
    (started.elapsed(), body)
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

    let started = Instant::now();
    let store = SqliteStore::open(&dir.path().join("imagegram.db"), 4)?;
    let comments = store.seed_synthetic(1_000, posts, 42)?;
    drop(store);
    println!(
        "seeded {posts} posts and {comments} comments in {:.1?}",
        started.elapsed()
    );

    let config = ServerArgs {
        listen: Some("127.0.0.1:0".parse()?),
        data_dir: Some(dir.path().to_owned()),
        workers: Some(0),
        ..Default::default()
    }
    .resolve()?;
    let running = imagegram::app::serve(config).await?;
    let base = format!("http://{}", running.addr.expect("listening"));
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
    running.stop().await;
    Ok(())
}
