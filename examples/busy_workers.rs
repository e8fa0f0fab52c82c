//! Feed latency while every image worker is busy: the API must not starve.
//!
//! ./scripts/image-corpus   # once, for the 12-megapixel photograph
//! cargo run --release --features bench --example busy_workers -- [IMAGE] [UPLOADS] [WORKERS]
//!
//! Seeds 10,000 ready posts in an embedded instance served in-process with
//! WORKERS image workers (default: the service's default, CPUs - 1), times 3,000 sequential `GET /v1/posts`
//! while idle, then uploads UPLOADS (default 120) copies of IMAGE (default the
//! corpus's 12.2-megapixel progressive JPEG), and times the same request for
//! as long as the workers are rendering that backlog.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use imagegram::config::{OnOff, ServerArgs};
use imagegram::store::sqlite::SqliteStore;
use reqwest::multipart::{Form, Part};
use support::report;

async fn feed(client: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    let resp = client.get(format!("{base}/v1/posts")).send().await.unwrap();
    assert!(resp.status().is_success());
    resp.bytes().await.unwrap();
    started.elapsed()
}

/// A post's status as its author sees it (others do not see unfinished posts).
async fn status(client: &reqwest::Client, base: &str, token: &str, id: &str) -> String {
    let post: serde_json::Value = client
        .get(format!("{base}/v1/posts/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    post["status"].as_str().unwrap_or_default().to_owned()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let image = args.get(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".bench/corpus/sunset_by_Aitzol_Berasategi.jpg")
    });
    let uploads: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(120);
    let workers: Option<usize> = args.get(3).map(|s| s.parse()).transpose()?;
    let bytes = std::fs::read(&image)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run scripts/image-corpus)", image.display()))?;
    let header = imaging::probe(&image, &imaging::Limits::default())?;

    let dir = tempfile::tempdir()?;
    SqliteStore::open(&dir.path().join("imagegram.db"), 4)?.seed_synthetic(100, 10_000, 7)?;
    let config = ServerArgs {
        listen: Some("127.0.0.1:0".parse()?),
        data_dir: Some(dir.path().to_owned()),
        rate_limit: Some(OnOff::Off),
        workers,
        ..Default::default()
    }
    .resolve()?;
    let workers = config.workers;
    let running = imagegram::app::serve(config).await?;
    let base = format!("http://{}", running.addr.expect("listening"));
    let client = reqwest::Client::new();
    println!(
        "{workers} worker(s) on {} CPUs; image {} ({}x{}, {:.1} MP)",
        std::thread::available_parallelism()?,
        image.display(),
        header.width,
        header.height,
        f64::from(header.width) * f64::from(header.height) / 1e6
    );

    for _ in 0..300 {
        feed(&client, &base).await;
    }
    let mut idle = Vec::new();
    for _ in 0..3_000 {
        idle.push(feed(&client, &base).await);
    }
    report("GET /v1/posts, workers idle", idle);

    let user: serde_json::Value = client
        .post(format!("{base}/v1/users"))
        .json(&serde_json::json!({"username": "uploader", "password": "benchmark password"}))
        .send()
        .await?
        .json()
        .await?;
    let token = user["token"].as_str().unwrap().to_owned();
    let mut ids = Vec::new();
    for n in 0..uploads {
        let form = Form::new()
            .text("caption", format!("busy {n}"))
            .part("image", Part::bytes(bytes.clone()).file_name("photo.jpg"));
        let resp = client
            .post(format!("{base}/v1/posts"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await?;
        assert_eq!(resp.status(), 202);
        let post: serde_json::Value = resp.json().await?;
        ids.push(post["id"].as_str().unwrap().to_owned());
    }

    let started = Instant::now();
    let mut busy = Vec::new();
    let last = ids.last().unwrap();
    loop {
        for _ in 0..100 {
            busy.push(feed(&client, &base).await);
        }
        if status(&client, &base, &token, last).await != "processing" {
            break;
        }
    }
    let window = started.elapsed();
    let mut ready = 0;
    for id in &ids {
        ready += usize::from(status(&client, &base, &token, id).await == "ready");
    }
    report("GET /v1/posts, workers busy", busy);
    println!(
        "{ready}/{uploads} uploads rendered in the {window:.1?} window ({:.1} images/s)",
        uploads as f64 / window.as_secs_f64()
    );
    running.stop().await;
    Ok(())
}
