//! Configuration: flags, `IMAGEGRAM_*` environment variables and an optional
//! TOML file, in that order of precedence, over built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "imagegram",
    version,
    about = "Imagegram: a self-hostable backend for an image-sharing app."
)]
#[command(
    after_help = "Every option can also be set in the TOML file given with --config, \
    using the option's long name with underscores (e.g. data_dir = \"/var/lib/imagegram\"). \
    Precedence: flag, then environment variable, then file, then default."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API (plus in-process image workers unless --workers 0).
    Serve(ServerArgs),
    /// Run image workers only.
    Worker(ServerArgs),
    /// Render IN exactly as the service would serve it, to the JPEG file OUT.
    Render(RenderArgs),
    /// Copy a whole instance (rows and blobs) to another database and blob store, then verify it.
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Options of `serve` and `worker`. Defaults are applied after the TOML file is read.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "IMAGEGRAM_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "IMAGEGRAM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database, blobs and staging files [default: ./imagegram-data].
    #[arg(long, env = "IMAGEGRAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite://DATA_DIR/imagegram.db].
    #[arg(long, env = "IMAGEGRAM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Blob store URL [default: file://DATA_DIR/blobs].
    #[arg(long, env = "IMAGEGRAM_BLOB_URL")]
    pub blob_url: Option<String>,
    /// In-process image workers; `serve --workers 0` runs an API-only node
    /// [default: number of CPUs minus one, at least 1].
    #[arg(long, env = "IMAGEGRAM_WORKERS")]
    pub workers: Option<usize>,
    /// Rate limiting, on or off [default: on].
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT")]
    pub rate_limit: Option<OnOff>,
    /// Requests per minute per user (per client address when anonymous): reads [default: 1200].
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT_READS")]
    pub rate_limit_reads: Option<u32>,
    /// Requests per minute per user or client: writes (comments, edits, deletes, accounts) [default: 300].
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT_WRITES")]
    pub rate_limit_writes: Option<u32>,
    /// Requests per minute per user or client: uploads (new posts, tus requests) [default: 60].
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT_UPLOADS")]
    pub rate_limit_uploads: Option<u32>,
    /// Comma-separated proxy addresses or CIDR ranges whose X-Forwarded-For is trusted [default: none].
    #[arg(long, env = "IMAGEGRAM_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Largest image accepted, in pixels, checked from the header [default: 100000000].
    #[arg(long, env = "IMAGEGRAM_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    /// Largest image side accepted, in pixels [default: 30000].
    #[arg(long, env = "IMAGEGRAM_MAX_SIDE")]
    pub max_side: Option<u32>,
    /// Estimated decode memory all of a process's image renders may hold at once, in MiB [default: 1024].
    #[arg(long, env = "IMAGEGRAM_IMAGE_MEMORY_MIB")]
    pub image_memory_mib: Option<u64>,
    /// Milliseconds a cached first feed page may live when the change that outdates it was made by another process; 0 disables the cache [default: 1000].
    #[arg(long, env = "IMAGEGRAM_FEED_CACHE_MS")]
    pub feed_cache_ms: Option<u64>,
    /// Milliseconds a checked bearer token is trusted without asking the database; a logout through another process takes that long to reach this one; 0 disables [default: 1000].
    #[arg(long, env = "IMAGEGRAM_SESSION_CACHE_MS")]
    pub session_cache_ms: Option<u64>,
    /// Benchmarks: serve a fixed body of this many bytes at GET /v1/_bench/ceiling.
    #[arg(long, hide = true)]
    pub bench_ceiling_bytes: Option<usize>,
    /// Seconds a worker holds a job without renewing it before another may take it over [default: 30].
    #[arg(long, env = "IMAGEGRAM_JOB_LEASE_SECS")]
    pub job_lease_secs: Option<u64>,
    /// Seconds an unfinished resumable upload lives after its last append [default: 86400].
    #[arg(long, env = "IMAGEGRAM_UPLOAD_EXPIRY_SECS")]
    pub upload_expiry_secs: Option<u64>,
    /// Seconds a connection may send nothing (headers or body) before it is dropped [default: 60].
    #[arg(long, env = "IMAGEGRAM_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Open connections served at once; past it, new connections get a 503 and are closed [default: 8192].
    #[arg(long, env = "IMAGEGRAM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Days a session (bearer token) lives unused before it expires [default: 30].
    #[arg(long, env = "IMAGEGRAM_SESSION_TTL_DAYS")]
    pub session_ttl_days: Option<u64>,
    /// Event streams (GET /v1/events) open at once on this node, over all users; each user may hold 8 [default: 4096].
    #[arg(long, env = "IMAGEGRAM_MAX_EVENT_STREAMS")]
    pub max_event_streams: Option<usize>,
    /// Seconds notifications are kept for event streams to resume from [default: 604800].
    #[arg(long, env = "IMAGEGRAM_EVENT_RETENTION_SECS")]
    pub event_retention_secs: Option<u64>,
    /// Log format [default: text].
    #[arg(long, env = "IMAGEGRAM_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Test hook: milliseconds each job waits after it is claimed.
    #[arg(long, env = "IMAGEGRAM_DEBUG_JOB_DELAY_MS", hide = true)]
    pub debug_job_delay_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Input image (PNG, JPEG or BMP).
    pub input: PathBuf,
    /// Output JPEG.
    pub output: PathBuf,
    /// none, grayscale or dither.
    #[arg(long, default_value = "none")]
    pub filter: String,
    /// Levels per channel for the dither filter (2..=16).
    #[arg(long)]
    pub dither_levels: Option<i64>,
    /// Largest image accepted, in pixels.
    #[arg(long, env = "IMAGEGRAM_MAX_PIXELS", default_value_t = 100_000_000)]
    pub max_pixels: u64,
    /// Largest image side accepted, in pixels.
    #[arg(long, env = "IMAGEGRAM_MAX_SIDE", default_value_t = 30_000)]
    pub max_side: u32,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example, from the embedded default to PostgreSQL + S3:\n  \
    imagegram migrate --from ./imagegram-data --to-database-url postgres://db/imagegram --to-blob-url s3://imagegram\n\n\
    Stop every node of the source first. Interrupted? Run the same command again: it resumes."
)]
pub struct MigrateArgs {
    /// Source data directory (its embedded database and blobs), unless overridden below.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Source database URL.
    #[arg(long)]
    pub from_database_url: Option<String>,
    /// Source blob store URL.
    #[arg(long)]
    pub from_blob_url: Option<String>,
    /// Target data directory (its embedded database and blobs), unless overridden below.
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// Target database URL.
    #[arg(long)]
    pub to_database_url: Option<String>,
    /// Target blob store URL.
    #[arg(long)]
    pub to_blob_url: Option<String>,
    /// Rows per transaction.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u32,
    /// Test hook: stop after copying this many rows, as if interrupted.
    #[arg(long, hide = true)]
    pub stop_after_rows: Option<u64>,
}

/// One side of `migrate`: explicit URLs win over the data directory's defaults.
pub fn instance(
    dir: Option<&Path>,
    database_url: Option<&str>,
    blob_url: Option<&str>,
    side: &str,
) -> anyhow::Result<(DatabaseUrl, BlobUrl)> {
    let database = match (database_url, dir) {
        (Some(url), _) => parse_database_url(url)?,
        (None, Some(dir)) => DatabaseUrl::Sqlite(dir.join("imagegram.db")),
        (None, None) => bail!("--{side} or --{side}-database-url is required"),
    };
    let blobs = match (blob_url, dir) {
        (Some(url), _) => parse_blob_url(url)?,
        (None, Some(dir)) => BlobUrl::Local(dir.join("blobs")),
        (None, None) => bail!("--{side} or --{side}-blob-url is required"),
    };
    Ok((database, blobs))
}

/// Where metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobUrl {
    Local(PathBuf),
    S3(String),
}

/// Fully resolved configuration of a server process.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub blobs: BlobUrl,
    pub workers: usize,
    pub image_limits: imaging::Limits,
    /// Bytes of estimated decode memory admitted at once.
    pub image_memory_budget: u64,
    pub feed_cache_ttl: Duration,
    pub session_cache_ttl: Duration,
    pub bench_ceiling_bytes: usize,
    pub job_lease: Duration,
    pub upload_expiry: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub session_ttl: Duration,
    pub max_event_streams: usize,
    pub event_retention: Duration,
    /// `None` when rate limiting is off.
    pub rate_limits: Option<crate::service::Budgets>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub log_format: LogFormat,
    pub debug_job_delay: Duration,
}

fn default_workers() -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    cpus.saturating_sub(1).max(1)
}

pub fn parse_database_url(url: &str) -> anyhow::Result<DatabaseUrl> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseUrl::Postgres(url.to_owned()))
    } else {
        bail!("unsupported database URL {url:?}: expected sqlite://PATH or postgres://…")
    }
}

pub fn parse_blob_url(url: &str) -> anyhow::Result<BlobUrl> {
    if let Some(path) = url.strip_prefix("file://") {
        Ok(BlobUrl::Local(PathBuf::from(path)))
    } else if let Some(bucket) = url.strip_prefix("s3://") {
        Ok(BlobUrl::S3(bucket.trim_end_matches('/').to_owned()))
    } else {
        bail!("unsupported blob URL {url:?}: expected file://DIR or s3://BUCKET")
    }
}

/// Proxy addresses (`10.0.0.7`) or ranges (`10.0.0.0/8`), comma-separated.
fn parse_proxies(raw: &str) -> anyhow::Result<Vec<ipnet::IpNet>> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .with_context(|| {
                    format!("--trusted-proxies: {s:?} is not an address or CIDR range")
                })
        })
        .collect()
}

fn read_file(path: &Path) -> anyhow::Result<ServerArgs> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

impl ServerArgs {
    /// Applies the TOML file (if any) under the flags and environment, then the defaults.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => ServerArgs::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./imagegram-data"));
        let database = match self.database_url.or(file.database_url) {
            Some(url) => parse_database_url(&url)?,
            None => DatabaseUrl::Sqlite(data_dir.join("imagegram.db")),
        };
        let blobs = match self.blob_url.or(file.blob_url) {
            Some(url) => parse_blob_url(&url)?,
            None => BlobUrl::Local(data_dir.join("blobs")),
        };
        let limits = imaging::Limits {
            max_pixels: self.max_pixels.or(file.max_pixels).unwrap_or(100_000_000),
            max_side: self.max_side.or(file.max_side).unwrap_or(30_000),
        };
        let lease = self
            .job_lease_secs
            .or(file.job_lease_secs)
            .unwrap_or(30)
            .max(1);
        let defaults = crate::service::Budgets::default();
        let limits_on = self.rate_limit.or(file.rate_limit).unwrap_or(OnOff::On) == OnOff::On;
        let rate_limits = limits_on.then(|| crate::service::Budgets {
            reads: self
                .rate_limit_reads
                .or(file.rate_limit_reads)
                .unwrap_or(defaults.reads),
            writes: self
                .rate_limit_writes
                .or(file.rate_limit_writes)
                .unwrap_or(defaults.writes),
            uploads: self
                .rate_limit_uploads
                .or(file.rate_limit_uploads)
                .unwrap_or(defaults.uploads),
        });
        let trusted_proxies = parse_proxies(
            self.trusted_proxies
                .as_deref()
                .or(file.trusted_proxies.as_deref())
                .unwrap_or(""),
        )?;
        Ok(Config {
            listen: self
                .listen
                .or(file.listen)
                .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid default")),
            data_dir,
            database,
            blobs,
            workers: self
                .workers
                .or(file.workers)
                .unwrap_or_else(default_workers),
            rate_limits,
            trusted_proxies,
            image_limits: limits,
            image_memory_budget: self
                .image_memory_mib
                .or(file.image_memory_mib)
                .unwrap_or(1024)
                .max(1)
                << 20,
            feed_cache_ttl: Duration::from_millis(
                self.feed_cache_ms.or(file.feed_cache_ms).unwrap_or(1000),
            ),
            session_cache_ttl: Duration::from_millis(
                self.session_cache_ms
                    .or(file.session_cache_ms)
                    .unwrap_or(1000),
            ),
            bench_ceiling_bytes: self
                .bench_ceiling_bytes
                .or(file.bench_ceiling_bytes)
                .unwrap_or(0),
            job_lease: Duration::from_secs(lease),
            upload_expiry: Duration::from_secs(
                self.upload_expiry_secs
                    .or(file.upload_expiry_secs)
                    .unwrap_or(86_400)
                    .max(1),
            ),
            idle_timeout: Duration::from_secs(
                self.idle_timeout_secs
                    .or(file.idle_timeout_secs)
                    .unwrap_or(60)
                    .max(1),
            ),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(8192)
                .max(1),
            session_ttl: Duration::from_secs(
                self.session_ttl_days
                    .or(file.session_ttl_days)
                    .unwrap_or(30)
                    .max(1)
                    * 24
                    * 3600,
            ),
            max_event_streams: self
                .max_event_streams
                .or(file.max_event_streams)
                .unwrap_or(crate::service::EventStreamSlots::DEFAULT_PER_NODE)
                .max(1),
            event_retention: Duration::from_secs(
                self.event_retention_secs
                    .or(file.event_retention_secs)
                    .unwrap_or(7 * 24 * 3600)
                    .max(1),
            ),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            debug_job_delay: Duration::from_millis(
                self.debug_job_delay_ms
                    .or(file.debug_job_delay_ms)
                    .unwrap_or(0),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_database_url("sqlite:///tmp/x.db").unwrap(),
            DatabaseUrl::Sqlite("/tmp/x.db".into())
        );
        assert_eq!(
            parse_database_url("sqlite:x.db").unwrap(),
            DatabaseUrl::Sqlite("x.db".into())
        );
        assert!(matches!(
            parse_database_url("postgres://h/db").unwrap(),
            DatabaseUrl::Postgres(_)
        ));
        assert!(parse_database_url("mysql://x").is_err());
        assert_eq!(
            parse_blob_url("s3://bucket/").unwrap(),
            BlobUrl::S3("bucket".into())
        );
        assert!(parse_blob_url("ftp://x").is_err());
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("imagegram.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\nworkers = 3\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(file),
            workers: Some(5),
            ..Default::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.workers, 5);
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("/from/file/imagegram.db".into())
        );
        assert!(c.rate_limits.is_some());
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let args = ServerArgs {
            config: Some(file),
            ..Default::default()
        };
        assert!(args.resolve().is_err());
    }
}
