//! Latency summaries, sign-ups and seeded instances shared by the benchmark examples.
// Each example compiles this module on its own, and none uses all of it.
#![allow(dead_code)]

use std::time::Duration;

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints one line: count, p50, p99, p99.9 and max of `samples`.
pub fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<34} n={:<6} p50={:>8.3?} p99={:>8.3?} p99.9={:>8.3?} max={:>8.3?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        percentile(&samples, 0.999),
        samples[samples.len() - 1]
    );
}

/// Registers `name` (password "benchmark password") at `base`; its token.
pub async fn register(client: &reqwest::Client, base: &str, name: &str) -> String {
    let v: serde_json::Value = client
        .post(format!("{base}/v1/users"))
        .json(&serde_json::json!({"username": name, "password": "benchmark password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// An embedded instance in `dir` seeded with `posts` ready posts by `users`
/// users, copied into PostgreSQL when BENCH_DATABASE_URL names an empty
/// database; the database URL to serve it from (None: the embedded one).
#[cfg(feature = "bench")]
pub async fn seeded_instance(
    dir: &std::path::Path,
    users: usize,
    posts: usize,
    seed: u64,
) -> anyhow::Result<Option<String>> {
    use imagegram::config::{BlobUrl, DatabaseUrl, parse_database_url};
    use imagegram::migrate::{Instance, Options};
    let started = std::time::Instant::now();
    let store = imagegram::store::sqlite::SqliteStore::open(&dir.join("imagegram.db"), 4)?;
    let comments = store.seed_synthetic(users, posts, seed)?;
    drop(store);
    println!(
        "seeded {posts} posts and {comments} comments in {:.1?}",
        started.elapsed()
    );
    let database_url = std::env::var("BENCH_DATABASE_URL").ok();
    if let Some(url) = &database_url {
        let started = std::time::Instant::now();
        let blobs = BlobUrl::Local(dir.join("blobs"));
        let from = Instance {
            database: DatabaseUrl::Sqlite(dir.join("imagegram.db")),
            blobs: blobs.clone(),
        };
        let to = Instance {
            database: parse_database_url(url)?,
            blobs,
        };
        let options = Options {
            batch_size: 5_000,
            stop_after_rows: None,
        };
        imagegram::migrate::run(from, to, options).await?;
        println!("copied into PostgreSQL in {:.1?}", started.elapsed());
    }
    println!(
        "backend: {}",
        if database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    Ok(database_url)
}

/// The API in this process on a loopback port over `dir` (and `database_url`,
/// when given), rate limits off and no image workers; with its base URL.
#[cfg(feature = "bench")]
pub async fn serve_in_process(
    dir: &std::path::Path,
    database_url: Option<String>,
) -> anyhow::Result<(imagegram::app::Running, String)> {
    use imagegram::config::{OnOff, ServerArgs};
    let config = ServerArgs {
        listen: Some("127.0.0.1:0".parse()?),
        data_dir: Some(dir.to_owned()),
        database_url,
        workers: Some(0),
        rate_limit: Some(OnOff::Off),
        ..Default::default()
    }
    .resolve()?;
    let running = imagegram::app::serve(config).await?;
    let base = format!("http://{}", running.addr.expect("listening"));
    Ok((running, base))
}
