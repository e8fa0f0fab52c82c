//! The load benchmark: a dataset, the real server, and `wrk` scenarios.
//!
//! ./scripts/bench-load [POSTS]     (installs wrk and runs this for SQLite, then PostgreSQL)
//! cargo run --release --features bench --example load -- [--posts N] [--postgres URL] [--duration SECS]
//!     [--connections C] [--write-connections C] [--mix-rate R] [--uploads N] [--image PATH]
//!     [--only SCENARIO,...] [--server PATH] [--label NAME]
//!
//! `--only create,create@5000` runs just those scenarios (names as in the results;
//! a create run is still preceded by its fill), `--server` another build of the
//! binary (an older commit's, for an A/B on the same data), and `--label` names
//! the result file `.bench/load-<backend>-<N>-<label>.json`.
//!
//! 1. Dataset: N posts (default 1,000,000) and about 10 comments per post with a
//!    skewed distribution, bulk-loaded into `.bench/dataset-N/` (kept for reuse);
//!    with `--postgres`, copied into that (empty) database by `imagegram migrate`.
//! 2. The release server on a loopback port (`--rate-limit off`, one image worker),
//!    with the ceiling endpoint sized like a first feed page.
//! 3. wrk (`bench/wrk/imagegram.lua`, -t1 -cC -dSECS) runs each scenario: ceiling,
//!    first page, random deep pages via real cursors (and both again as a
//!    signed-in reader who blocks 100 of the 1,000 authors: `first-blocks`,
//!    `deep-blocks`, and all four again offered at 2,000/s) and single post with C
//!    connections as fast as they are answered, each after a 2-second warm-up;
//!    comment create and delete with the write connections (default 16), create
//!    after an unmeasured fill run; deep pages and comment creation again
//!    offered at their target rates (`deep@10000`, `create@5000`); and the mix
//!    offered at a fixed rate (default 100x the forecast) while the worker
//!    renders a backlog of uploads of a 12-megapixel photograph.
//!    Results: `.bench/load-<backend>-<N>.json` and a table on stdout, with the
//!    SQLite writer's metrics (group sizes, WAL fsyncs, checkpoints) when they exist.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use imagegram::config::{BlobUrl, DatabaseUrl, parse_database_url};
use imagegram::migrate::{Instance, Options};
use imagegram::store::sqlite::SqliteStore;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

/// The forecast — 100 reads/s, 100,000 comments and 1,000 images an hour —
/// times 100, in requests per second: (100 + 27.8 + 0.3) x 100.
const FORECAST_X100: u32 = 12_800;

/// Connections that carry a load offered at a rate: enough that a free one is
/// nearly always there when the schedule says a request is due, so the rate
/// offered hardly depends on how fast the server answers.
const PACED_CONNECTIONS: u32 = 256;

/// Seconds of unmeasured load before each read scenario (the write scenarios
/// are warmed by the fill run; a warm-up of the delete run would use up ids).
const WARM_UP_SECS: u64 = 2;

struct Args {
    posts: usize,
    postgres: Option<String>,
    duration: u64,
    connections: u32,
    write_connections: u32,
    mix_rate: u32,
    uploads: usize,
    image: PathBuf,
    /// Scenario names to run (`create@5000` for an at-rate run); all when empty.
    only: Vec<String>,
    server: PathBuf,
    label: Option<String>,
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// Every scenario, in the order they run. `scenario@rate` offers the issue's
/// throughput targets as rates, so that their p99 can be read against the
/// latency target.
const SCENARIOS: &[&str] = &[
    "ceiling",
    "first",
    "deep",
    "deep@10000",
    "first-blocks",
    "deep-blocks",
    "first@2000",
    "first-blocks@2000",
    "deep@2000",
    "deep-blocks@2000",
    "post",
    "create",
    "create@5000",
    "delete",
    "mix",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        posts: 1_000_000,
        postgres: None,
        duration: 10,
        connections: 64,
        // Durable writes wait for a group's fsync; with 64 writers in flight
        // the mean latency is 64 / throughput whatever the server does
        // (Little's law), so they are measured at 16.
        write_connections: 16,
        mix_rate: FORECAST_X100,
        uploads: 60,
        image: root().join(".bench/corpus/sunset_by_Aitzol_Berasategi.jpg"),
        only: Vec::new(),
        server: root().join("target/release/imagegram"),
        label: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--posts" => args.posts = value()?.parse()?,
            "--postgres" => args.postgres = Some(value()?),
            "--duration" => args.duration = value()?.parse()?,
            "--connections" => args.connections = value()?.parse()?,
            "--write-connections" => args.write_connections = value()?.parse()?,
            "--mix-rate" => args.mix_rate = value()?.parse()?,
            "--uploads" => args.uploads = value()?.parse()?,
            "--image" => args.image = value()?.into(),
            "--only" => args.only = value()?.split(',').map(str::to_owned).collect(),
            "--server" => args.server = value()?.into(),
            "--label" => args.label = Some(value()?),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    if let Some(unknown) = args.only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
        anyhow::bail!("unknown scenario {unknown}; known: {}", SCENARIOS.join(","));
    }
    Ok(args)
}

/// The SQLite dataset, generated once per size.
fn dataset(posts: usize) -> anyhow::Result<PathBuf> {
    let dir = root().join(format!(".bench/dataset-{posts}"));
    let done = dir.join("complete");
    if done.exists() {
        println!("dataset: reusing {}", dir.display());
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bar = ProgressBar::new(posts as u64).with_style(ProgressStyle::with_template(
        "seeding {bar:40} {pos}/{len} posts, {msg} [{elapsed_precise}, eta {eta}]",
    )?);
    let started = Instant::now();
    let store = SqliteStore::open(&dir.join("imagegram.db"), 2)?;
    let comments = store.seed_synthetic_with_progress(1_000, posts, 42, &|p, c| {
        bar.set_position(p);
        bar.set_message(format!("{c} comments"));
    })?;
    bar.finish();
    println!(
        "dataset: {posts} posts, {comments} comments in {:.1?}",
        started.elapsed()
    );
    std::fs::write(&done, format!("{posts} {comments}\n"))?;
    Ok(dir)
}

/// Copies the dataset into PostgreSQL once (a marker file remembers it).
async fn into_postgres(dir: &Path, url: &str) -> anyhow::Result<()> {
    let marker = dir.join(format!(
        "postgres-{:x}",
        url.bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
    ));
    if marker.exists() {
        println!("dataset: already in PostgreSQL");
        return Ok(());
    }
    let started = Instant::now();
    let blobs = BlobUrl::Local(dir.join("blobs"));
    imagegram::migrate::run(
        Instance {
            database: DatabaseUrl::Sqlite(dir.join("imagegram.db")),
            blobs: blobs.clone(),
        },
        Instance {
            database: parse_database_url(url)?,
            blobs,
        },
        Options {
            batch_size: 10_000,
            stop_after_rows: None,
        },
    )
    .await?;
    println!(
        "dataset: copied into PostgreSQL in {:.1?}",
        started.elapsed()
    );
    std::fs::write(marker, "")?;
    Ok(())
}

/// A copy of the dataset's database for this run (`<database>_run`, made
/// anew from it as a template), as SQLite's side runs on a copy of its file:
/// every run starts from the same rows, whatever earlier runs wrote.
/// Returns its URL.
async fn fresh_copy(url: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut admin = reqwest::Url::parse(url)?;
    let dataset = admin.path().trim_start_matches('/').to_owned();
    let run = format!("{dataset}_run");
    admin.set_path("/postgres");
    let mut conn = sqlx::PgConnection::connect(admin.as_str()).await?;
    let started = Instant::now();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{run}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    // FILE_COPY copies the files; the default (WAL_LOG) would write the
    // whole database through the WAL.
    // The copy into the dataset's database may still be closing its
    // connections, and a template must have none.
    let create = format!("CREATE DATABASE \"{run}\" TEMPLATE \"{dataset}\" STRATEGY FILE_COPY");
    let mut tries = 0;
    while let Err(e) = sqlx::query(sqlx::AssertSqlSafe(create.clone()))
        .execute(&mut conn)
        .await
    {
        tries += 1;
        if tries == 20 {
            return Err(e.into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "copied the database for this run in {:.1?}",
        started.elapsed()
    );
    let mut run_url = reqwest::Url::parse(url)?;
    run_url.set_path(&format!("/{run}"));
    Ok(run_url.to_string())
}

/// Reads every table and index of the dataset into PostgreSQL's buffers, as
/// SQLite's side starts with its file in the kernel's cache (mapped): the
/// runs then measure requests, not the first read of each page. Only a note
/// when `pg_prewarm` (PostgreSQL's contrib) is missing.
async fn prewarm(url: &str) {
    use sqlx::Connection;
    let warmed = async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
            .execute(&mut conn)
            .await?;
        sqlx::query_scalar::<_, i64>(
            "SELECT sum(pg_prewarm(c.oid))::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i')",
        )
        .fetch_one(&mut conn)
        .await
    };
    match warmed.await {
        Ok(blocks) => println!("dataset: {blocks} PostgreSQL blocks prewarmed"),
        Err(e) => println!("dataset: not prewarmed ({e})"),
    }
}

struct Server {
    child: tokio::process::Child,
    base: String,
    pid: Option<u32>,
}

async fn start(
    binary: &Path,
    dir: &Path,
    postgres: Option<&str>,
    extra: &[String],
) -> anyhow::Result<Server> {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--rate-limit",
        "off",
        "--workers",
        "1",
    ])
    .arg("--data-dir")
    .arg(dir)
    .args(extra)
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if let Some(url) = postgres {
        cmd.args(["--database-url", url]);
    }
    let mut child = cmd.spawn()?;
    let mut line = String::new();
    tokio::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await?;
    let base = line
        .trim()
        .strip_prefix("imagegram listening on ")
        .ok_or_else(|| anyhow::anyhow!("the server did not start: {line}"))?
        .to_owned();
    Ok(Server {
        pid: child.id(),
        child,
        base,
    })
}

async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    Ok(client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Walks the whole feed for real cursors; keeps one post id per page.
/// Cursors and post ids for the scenarios, and the authors of the top posts.
async fn prepare(
    client: &reqwest::Client,
    base: &str,
    data: &Path,
) -> anyhow::Result<(usize, Vec<String>)> {
    let mut cursors = Vec::new();
    let mut posts = Vec::new();
    let mut authors: Vec<String> = Vec::new();
    let mut url = format!("{base}/v1/posts?limit=100");
    loop {
        let page = get_json(client, &url).await?;
        if let Some(id) = page["items"][0]["id"].as_str() {
            posts.push(id.to_owned());
        }
        for item in page["items"].as_array().into_iter().flatten() {
            let name = item["author"]["username"].as_str().unwrap_or_default();
            if authors.len() < BLOCKS * 10 && !name.is_empty() && !authors.iter().any(|a| a == name)
            {
                authors.push(name.to_owned());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                cursors.push(c.to_owned());
                url = format!("{base}/v1/posts?limit=100&cursor={c}");
            }
            None => break,
        }
    }
    std::fs::write(data.join("cursors.txt"), cursors.join("\n") + "\n")?;
    std::fs::write(data.join("posts.txt"), posts.join("\n") + "\n")?;
    // Every tenth author in order of first appearance: a tenth of the dataset's
    // 1,000 authors, spread over the ranking as a reader's blocks would be.
    let blocked = authors.into_iter().step_by(10).take(BLOCKS).collect();
    Ok((cursors.len(), blocked))
}

/// How many authors the `-blocks` scenarios' reader blocks.
const BLOCKS: usize = 100;

/// A reader who blocks `authors`; their token.
async fn blocker(
    client: &reqwest::Client,
    base: &str,
    authors: &[String],
) -> anyhow::Result<String> {
    let token = register(client, base, "blocker").await?;
    for name in authors {
        let status = client
            .put(format!("{base}/v1/me/blocks/{name}"))
            .bearer_auth(&token)
            .send()
            .await?
            .status();
        anyhow::ensure!(status.as_u16() == 204, "blocking {name}: {status}");
    }
    Ok(token)
}

async fn register(client: &reqwest::Client, base: &str, role: &str) -> anyhow::Result<String> {
    let name = format!("{role}_{}", std::process::id());
    let v: Value = client
        .post(format!("{base}/v1/users"))
        .json(&json!({"username": name, "password": "benchmark password"}))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["token"].as_str().unwrap_or_default().to_owned())
}

/// One wrk run: `connections` connections for `seconds`.
struct Run<'a> {
    scenario: &'a str,
    connections: u32,
    seconds: u64,
    /// Requests per second offered (the mix, `scenario@rate`), else as fast as answered.
    rate: Option<u32>,
}

fn wrk(run: &Run<'_>, base: &str, data: &Path, token: &str) -> anyhow::Result<Value> {
    let scenario = run.scenario;
    let result = data.join(format!("{scenario}.json"));
    let mut cmd = std::process::Command::new("wrk");
    if let Some(rate) = run.rate {
        cmd.env("RATE", rate.to_string());
    }
    let status = cmd
        .args([
            "-t1",
            &format!("-c{}", run.connections),
            &format!("-d{}s", run.seconds),
        ])
        .args(["--timeout", "5s", "-s"])
        .arg(root().join("bench/wrk/imagegram.lua"))
        .arg(base)
        .env("SCENARIO", scenario)
        .env("BENCH_DATA", data)
        .env("TOKEN", token)
        .env("RESULT", &result)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "wrk failed for {scenario}");
    Ok(serde_json::from_str(&std::fs::read_to_string(result)?)?)
}

/// Queues `n` uploads of `image` so the worker has a backlog; returns their ids.
async fn upload_backlog(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    image: &Path,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let bytes = std::fs::read(image)
        .map_err(|e| anyhow::anyhow!("{}: {e} (run scripts/image-corpus)", image.display()))?;
    let mut ids = Vec::new();
    for i in 0..n {
        let form = Form::new()
            .text("caption", format!("backlog {i}"))
            .part("image", Part::bytes(bytes.clone()).file_name("photo.jpg"));
        let v: Value = client
            .post(format!("{base}/v1/posts"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await?
            .json()
            .await?;
        ids.push(v["id"].as_str().unwrap_or_default().to_owned());
    }
    Ok(ids)
}

async fn still_processing(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[String],
) -> usize {
    let mut n = 0;
    for id in ids {
        let v: Value = match client
            .get(format!("{base}/v1/posts/{id}"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => Value::Null,
        };
        n += usize::from(v["status"] == "processing");
    }
    n
}

/// The mix, offered at `--mix-rate` right after queueing a backlog of uploads,
/// so the image worker renders throughout.
async fn run_mix(
    args: &Args,
    pid: Option<u32>,
    client: &reqwest::Client,
    base: &str,
    data: &Path,
    token: &str,
) -> anyhow::Result<Value> {
    let backlog = upload_backlog(client, base, token, &args.image, args.uploads).await?;
    let run = Run {
        scenario: "mix",
        connections: PACED_CONNECTIONS,
        seconds: args.duration,
        rate: Some(args.mix_rate),
    };
    let mut mix = measured(pid, || wrk(&run, base, data, token))?;
    mix["offered_rps"] = json!(args.mix_rate);
    mix["uploads_still_processing_after"] =
        json!(still_processing(client, base, token, &backlog).await);
    mix["uploads_queued_before"] = json!(backlog.len());
    Ok(mix)
}

/// CPU time and run-queue wait in ns per thread name of process `pid`, from
/// Linux's schedstat (empty elsewhere).
fn thread_times(pid: Option<u32>) -> BTreeMap<String, (u64, u64)> {
    let mut times = BTreeMap::new();
    let Some(Ok(tasks)) = pid.map(|p| std::fs::read_dir(format!("/proc/{p}/task"))) else {
        return times;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let mut fields = stat
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        let time = times.entry(name.trim().to_owned()).or_insert((0, 0));
        time.0 += fields.next().unwrap_or(0);
        time.1 += fields.next().unwrap_or(0);
    }
    times
}

/// The machine's CPU time so far by kind (clock ticks): busy, idle, iowait, steal.
fn machine_times() -> [u64; 4] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    [at(0) + at(1) + at(2) + at(5) + at(6), at(3), at(4), at(7)]
}

/// CPU time (clock ticks) of each PostgreSQL server process on this machine,
/// by pid: with `--postgres`, the database's share of a request's cost.
fn postgres_ticks() -> BTreeMap<u32, u64> {
    let mut ticks = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: utime and stime are the 12th and 13th
        // fields after the parenthesised name.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if !head.ends_with("(postgres") {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() > 12 {
            ticks.insert(pid, f[11] + f[12]);
        }
    }
    ticks
}

/// Seconds of PostgreSQL CPU between two `postgres_ticks` readings
/// (processes started in between count whole).
fn postgres_cpu_between(before: &BTreeMap<u32, u64>, after: &BTreeMap<u32, u64>) -> f64 {
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum();
    ticks as f64 / hz
}

/// The CPU time of finished, waited-for children (wrk), in seconds.
fn children_cpu() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Runs one measured wrk run and adds where the CPU went while it ran: each
/// server thread's share of a core on the CPU and waiting for one (on the run
/// queue), the server's CPU per request, wrk's own CPU, and the machine's busy,
/// idle, iowait and steal time (shares of all its cores). Shows which stage a
/// saturated run is short of.
fn measured(
    pid: Option<u32>,
    run: impl FnOnce() -> anyhow::Result<Value>,
) -> anyhow::Result<Value> {
    let (threads, machine, wrk_cpu) = (thread_times(pid), machine_times(), children_cpu());
    let database = postgres_ticks();
    let started = Instant::now();
    let mut r = run()?;
    let secs = started.elapsed().as_secs_f64();
    let wrk_cpu = children_cpu() - wrk_cpu;
    let database_cpu = postgres_cpu_between(&database, &postgres_ticks());
    let machine_after = machine_times();
    let ticks: Vec<f64> = machine_after
        .iter()
        .zip(machine)
        .map(|(b, a)| b.saturating_sub(a) as f64)
        .collect();
    let total: f64 = ticks.iter().sum::<f64>().max(1.0);
    let share = |ns: u64| round3(ns as f64 / 1e9 / secs);
    let mut server_ns = 0;
    let mut per_thread = serde_json::Map::new();
    for (name, (run_ns, wait_ns)) in thread_times(pid) {
        let (run0, wait0) = threads.get(&name).copied().unwrap_or((0, 0));
        let (run_ns, wait_ns) = (run_ns.saturating_sub(run0), wait_ns.saturating_sub(wait0));
        server_ns += run_ns;
        if run_ns > 0 {
            per_thread.insert(
                name,
                json!({"on_cpu": share(run_ns), "waiting_for_cpu": share(wait_ns)}),
            );
        }
    }
    let requests = r["requests"].as_f64().unwrap_or(0.0).max(1.0);
    r["cpu"] = json!({
        "server_us_per_request": (server_ns as f64 / 1e3 / requests).round(),
        "wrk_us_per_request": (wrk_cpu * 1e6 / requests).round(),
        "postgres_us_per_request": (database_cpu * 1e6 / requests).round(),
        "server_threads": per_thread,
        "machine": {
            "busy": round3(ticks[0] / total),
            "idle": round3(ticks[1] / total),
            "iowait": round3(ticks[2] / total),
            "steal": round3(ticks[3] / total),
        },
    });
    Ok(r)
}

/// A share or fraction as reported: three decimals.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// One line of `measured`'s figures, busiest thread first.
fn cpu_summary(r: &Value) -> String {
    let cpu = &r["cpu"];
    let mut threads: Vec<(&String, &Value)> = cpu["server_threads"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    threads.sort_by(|a, b| {
        b.1["on_cpu"]
            .as_f64()
            .partial_cmp(&a.1["on_cpu"].as_f64())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let pct = |v: &Value| v.as_f64().unwrap_or(0.0) * 100.0;
    let busiest: Vec<String> = threads
        .iter()
        .take(4)
        .map(|(name, t)| {
            format!(
                "{name} {:.0}% (+{:.0}% waiting)",
                pct(&t["on_cpu"]),
                pct(&t["waiting_for_cpu"])
            )
        })
        .collect();
    let m = &cpu["machine"];
    format!(
        "cpu: server {} us/request, PostgreSQL {} us/request, wrk {} us/request; {}; machine busy {:.0}%, idle {:.0}%, iowait {:.0}%, steal {:.0}%",
        cpu["server_us_per_request"],
        cpu["postgres_us_per_request"],
        cpu["wrk_us_per_request"],
        busiest.join(", "),
        pct(&m["busy"]),
        pct(&m["idle"]),
        pct(&m["iowait"]),
        pct(&m["steal"])
    )
}

/// The SQLite writer's totals from `/metrics` (sums and counts of its
/// histograms: group sizes, WAL fsyncs, checkpoint passes, rewind waits).
async fn store_metrics(client: &reqwest::Client, base: &str) -> Vec<String> {
    let Ok(text) = async {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await
    }
    .await
    else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| {
            (l.starts_with("sqlite_") || l.starts_with("postgres_batch"))
                && (l.contains("_sum") || l.contains("_count"))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let backend = if args.postgres.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    let dir = dataset(args.posts)?;
    let run_url = match &args.postgres {
        Some(url) => {
            into_postgres(&dir, url).await?;
            let run_url = fresh_copy(url).await?;
            prewarm(&run_url).await;
            Some(run_url)
        }
        None => None,
    };
    // The server writes into its data dir; work on a copy so the dataset stays pristine.
    let run_dir = root().join(format!(".bench/run-{backend}"));
    let _ = std::fs::remove_dir_all(&run_dir);
    std::fs::create_dir_all(&run_dir)?;
    if args.postgres.is_none() {
        let started = Instant::now();
        std::fs::copy(dir.join("imagegram.db"), run_dir.join("imagegram.db"))?;
        // Otherwise the kernel writes the copy back during the first scenarios.
        std::fs::File::open(run_dir.join("imagegram.db"))?.sync_all()?;
        println!(
            "copied the dataset for this run in {:.1?}",
            started.elapsed()
        );
    }
    let data = root().join(format!(".bench/load-{backend}"));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;

    // The first page's size decides the ceiling's body.
    let size = {
        let mut server = start(&args.server, &run_dir, run_url.as_deref(), &[]).await?;
        let size = client
            .get(format!("{}/v1/posts", server.base))
            .send()
            .await?
            .bytes()
            .await?
            .len();
        // Waited for here, so that its CPU time is not counted as wrk's
        // (`children_cpu`) when it is reaped during a measured run.
        server.child.kill().await?;
        size
    };
    let server = start(
        &args.server,
        &run_dir,
        run_url.as_deref(),
        &["--bench-ceiling-bytes".into(), size.to_string()],
    )
    .await?;
    let base = server.base.clone();
    let started = Instant::now();
    let (pages, authors) = prepare(&client, &base, &data).await?;
    println!(
        "backend {backend}: {pages} cursors collected in {:.1?}; first page {size} bytes",
        started.elapsed()
    );
    let token = register(&client, &base, "load").await?;
    let blocker_token = if SCENARIOS
        .iter()
        .any(|s| s.ends_with("-blocks") && args.wants(s))
    {
        blocker(&client, &base, &authors).await?
    } else {
        String::new()
    };

    let mut results = Vec::new();
    let mut filled = false;
    for &name in SCENARIOS.iter().filter(|s| args.wants(s)) {
        let (scenario, rate) = match name.split_once('@') {
            Some((s, rate)) => (s, Some(rate.parse::<u32>()?)),
            None => (name, None),
        };
        let r = match scenario {
            "mix" => run_mix(&args, server.pid, &client, &base, &data, &token).await?,
            _ => {
                if scenario == "create" && !filled {
                    // Unmeasured: warms the writer up and leaves enough comments
                    // of ours for the delete run, which is faster than creation.
                    let fill = Run {
                        scenario,
                        connections: args.write_connections,
                        seconds: 2 * args.duration,
                        rate: None,
                    };
                    wrk(&fill, &base, &data, &token)?;
                    filled = true;
                }
                if scenario == "delete" {
                    std::fs::rename(data.join("created.txt"), data.join("comments.txt"))
                        .map_err(|e| anyhow::anyhow!("delete deletes what create made: {e}"))?;
                }
                let token = if scenario.ends_with("-blocks") {
                    &blocker_token
                } else {
                    &token
                };
                let writes = matches!(scenario, "create" | "delete");
                let connections = match (rate, writes) {
                    (Some(_), _) => PACED_CONNECTIONS,
                    (None, true) => args.write_connections,
                    (None, false) => args.connections,
                };
                if !writes {
                    // Unmeasured: a fresh server's first seconds (connections,
                    // buffers, caches) would otherwise land in the reads' tail.
                    let warm_up = Run {
                        scenario,
                        connections,
                        seconds: WARM_UP_SECS,
                        rate,
                    };
                    wrk(&warm_up, &base, &data, token)?;
                }
                let run = Run {
                    scenario,
                    connections,
                    seconds: args.duration,
                    rate,
                };
                let mut r = measured(server.pid, || wrk(&run, &base, &data, token))?;
                r["scenario"] = json!(name);
                if let Some(rate) = rate {
                    r["offered_rps"] = json!(rate);
                }
                r
            }
        };
        println!("{r}");
        println!("  {}", cpu_summary(&r));
        results.push(r);
    }

    let ceiling = results
        .iter()
        .find(|r| r["scenario"] == "ceiling")
        .and_then(|r| r["rps"].as_f64());
    if let Some(ceiling) = ceiling {
        for r in &mut results {
            let fraction = r["rps"].as_f64().unwrap_or(0.0) / ceiling;
            r["fraction_of_ceiling"] = json!(round3(fraction));
        }
    }
    let writer_metrics = store_metrics(&client, &base).await;
    let report = json!({
        "backend": backend,
        "posts": args.posts,
        "dataset": std::fs::read_to_string(dir.join("complete"))?.trim(),
        "cpus": std::thread::available_parallelism()?.get(),
        "wrk": format!(
            "-t1 -c{} -d{}s; create/delete -c{}; scenario@rate and mix (offered {}/s) -c{}",
            args.connections, args.duration, args.write_connections, args.mix_rate, PACED_CONNECTIONS
        ),
        "first_page_bytes": size,
        "scenarios": results,
        "sqlite_writer_metrics": writer_metrics,
    });
    let label = args
        .label
        .as_ref()
        .map(|l| format!("-{l}"))
        .unwrap_or_default();
    let out = root().join(format!(".bench/load-{backend}-{}{label}.json", args.posts));
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!(
        "\n{:<12} {:>9} {:>8} {:>8} {:>8} {:>9} {:>7}",
        "scenario", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "ceiling", "errors"
    );
    for r in report["scenarios"].as_array().unwrap() {
        let e = &r["errors"];
        let errors: u64 = ["connect", "read", "write", "status", "timeout"]
            .iter()
            .map(|k| e[k].as_u64().unwrap_or(0))
            .sum();
        println!(
            "{:<12} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.0}% {:>7}",
            r["scenario"].as_str().unwrap_or(""),
            r["rps"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["p999_ms"].as_f64().unwrap_or(0.0),
            r["fraction_of_ceiling"]
                .as_f64()
                .map_or(f64::NAN, |f| f * 100.0),
            errors
        );
        if r["ids_exhausted"] == true {
            println!("         (ran out of comment ids: part of this run was first pages)");
        }
    }
    for line in &writer_metrics {
        println!("{line}");
    }
    println!("results: {}", out.display());
    Ok(())
}
