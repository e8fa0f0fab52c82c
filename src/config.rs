//! Configuration of `serve` and `worker`, layered with figment: built-in
//! defaults (written once, in `Settings::default`), under an optional TOML
//! file, under `IMAGEGRAM_*` environment variables and flags (clap reads
//! both; a flag wins over its variable). `--help` shows the defaults from
//! `Settings::default`, and a test checks the README's table against them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

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
    /// Operator tasks on accounts: grant roles, reset passwords.
    Admin(AdminArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "The instance is found as `serve` finds it (--data-dir, --database-url, --config, IMAGEGRAM_*), \
    given before the action.\n\
    Example: imagegram admin set-role alice moderator\n         \
    echo 'a new password' | imagegram admin reset-password alice"
)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub action: AdminAction,
    #[command(flatten)]
    pub instance: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Give USERNAME the role ROLE: user, moderator or admin.
    SetRole { username: String, role: String },
    /// Set a new password for USERNAME, read from the first line of standard input, and revoke all its sessions.
    ResetPassword { username: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Options of `serve` and `worker` as given on the command line or in the
/// environment: `None` where not given. Each has a field of the same name in
/// `Settings` (a test checks it).
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct ServerArgs {
    /// TOML configuration file.
    #[arg(long, env = "IMAGEGRAM_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on
    #[arg(long, env = "IMAGEGRAM_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database, blobs and staging files
    #[arg(long, env = "IMAGEGRAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL; `sqlite://DATA_DIR/imagegram.db` when not given, `postgres://…` to scale out
    #[arg(long, env = "IMAGEGRAM_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Blob store URL; `file://DATA_DIR/blobs` when not given, `s3://BUCKET` to scale out
    #[arg(long, env = "IMAGEGRAM_BLOB_URL")]
    pub blob_url: Option<String>,
    /// PostgreSQL connections per process; two per CPU when not given
    #[arg(long, env = "IMAGEGRAM_DATABASE_POOL")]
    pub database_pool: Option<usize>,
    /// In-process image workers, one per CPU but one (at least one) when not given; `serve --workers 0` runs an API-only node
    ///
    #[arg(long, env = "IMAGEGRAM_WORKERS")]
    pub workers: Option<usize>,
    /// Rate limiting, on or off
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT")]
    pub rate_limit: Option<OnOff>,
    /// Requests per minute per user (per client address when anonymous): reads
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT_READS")]
    pub rate_limit_reads: Option<u32>,
    /// Requests per minute per user or client: writes (comments, edits, deletes, accounts)
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT_WRITES")]
    pub rate_limit_writes: Option<u32>,
    /// Requests per minute per user or client: uploads (new posts, tus requests)
    #[arg(long, env = "IMAGEGRAM_RATE_LIMIT_UPLOADS")]
    pub rate_limit_uploads: Option<u32>,
    /// Comma-separated proxy addresses or CIDR ranges whose X-Forwarded-For is trusted
    #[arg(long, env = "IMAGEGRAM_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Largest image accepted, in pixels, checked from the header
    #[arg(long, env = "IMAGEGRAM_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    /// Largest image side accepted, in pixels
    #[arg(long, env = "IMAGEGRAM_MAX_SIDE")]
    pub max_side: Option<u32>,
    /// Estimated decode memory all of a process's image renders may hold at once, in MiB
    #[arg(long, env = "IMAGEGRAM_IMAGE_MEMORY_MIB")]
    pub image_memory_mib: Option<u64>,
    /// Milliseconds a cached first feed page may live when the change that outdates it was made by another process; 0 disables the cache
    #[arg(long, env = "IMAGEGRAM_FEED_CACHE_MS")]
    pub feed_cache_ms: Option<u64>,
    /// Milliseconds a checked bearer token is trusted without asking the database; a logout through another process takes that long to reach this one; 0 disables
    #[arg(long, env = "IMAGEGRAM_SESSION_CACHE_MS")]
    pub session_cache_ms: Option<u64>,
    /// Benchmarks: serve a fixed body of this many bytes at GET /v1/_bench/ceiling.
    #[cfg(feature = "bench")]
    #[arg(long, hide = true)]
    pub bench_ceiling_bytes: Option<usize>,
    /// Seconds a worker holds a job without renewing it before another may take it over
    #[arg(long, env = "IMAGEGRAM_JOB_LEASE_SECS")]
    pub job_lease_secs: Option<u64>,
    /// Seconds an unfinished resumable upload lives after its last append
    #[arg(long, env = "IMAGEGRAM_UPLOAD_EXPIRY_SECS")]
    pub upload_expiry_secs: Option<u64>,
    /// Seconds a connection may send nothing (headers or body) before it is dropped
    #[arg(long, env = "IMAGEGRAM_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Open connections served at once; past it, new connections get a 503 and are closed
    #[arg(long, env = "IMAGEGRAM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Days a session (bearer token) lives unused before it expires
    #[arg(long, env = "IMAGEGRAM_SESSION_TTL_DAYS")]
    pub session_ttl_days: Option<u64>,
    /// Event streams (GET /v1/events) open at once on this node, over all users; each user may hold 8
    #[arg(long, env = "IMAGEGRAM_MAX_EVENT_STREAMS")]
    pub max_event_streams: Option<usize>,
    /// Seconds notifications are kept for event streams to resume from
    #[arg(long, env = "IMAGEGRAM_EVENT_RETENTION_SECS")]
    pub event_retention_secs: Option<u64>,
    /// Log format
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
    /// Largest image accepted, in pixels (default as for `serve`).
    #[arg(long, env = "IMAGEGRAM_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    /// Largest image side accepted, in pixels (default as for `serve`).
    #[arg(long, env = "IMAGEGRAM_MAX_SIDE")]
    pub max_side: Option<u32>,
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
    /// Rows per transaction. Into PostgreSQL, a batch is one COPY: 10,000-row
    /// batches copied the 100k-post dataset in 37 s, 1,000-row ones in 70 s.
    #[arg(long, default_value_t = 10_000)]
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
    /// PostgreSQL connections per process.
    pub database_pool: usize,
    pub blobs: BlobUrl,
    pub workers: usize,
    pub image_limits: imaging::Limits,
    /// Bytes of estimated decode memory admitted at once.
    pub image_memory_budget: u64,
    pub feed_cache_ttl: Duration,
    pub session_cache_ttl: Duration,
    #[cfg(feature = "bench")]
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

/// PostgreSQL connections per process when not configured: two per CPU.
/// Each connection is a server process; more than the cores can run only
/// queue for them, and on 2 cores (database and server on one machine) 4
/// measured faster than 16 for reads and writes alike (BENCHMARKS.md,
/// "PostgreSQL at the speed of its engine").
pub fn default_database_pool() -> usize {
    2 * std::thread::available_parallelism().map_or(2, |n| n.get())
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

/// Every setting of `serve` and `worker`, named as in the TOML file, with
/// the one copy of its default. `None` stands for a default computed from
/// other settings or the machine (see `ServerArgs` for each one's meaning).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: `sqlite://DATA_DIR/imagegram.db`.
    pub database_url: Option<String>,
    /// `None`: `file://DATA_DIR/blobs`.
    pub blob_url: Option<String>,
    /// `None`: two per CPU (`default_database_pool`).
    pub database_pool: Option<usize>,
    /// `None`: one per CPU but one, at least one.
    pub workers: Option<usize>,
    pub rate_limit: OnOff,
    pub rate_limit_reads: u32,
    pub rate_limit_writes: u32,
    pub rate_limit_uploads: u32,
    pub trusted_proxies: String,
    pub max_pixels: u64,
    pub max_side: u32,
    pub image_memory_mib: u64,
    pub feed_cache_ms: u64,
    pub session_cache_ms: u64,
    #[cfg(feature = "bench")]
    pub bench_ceiling_bytes: usize,
    pub job_lease_secs: u64,
    pub upload_expiry_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub session_ttl_days: u64,
    pub max_event_streams: usize,
    pub event_retention_secs: u64,
    pub log_format: LogFormat,
    pub debug_job_delay_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let image_limits = imaging::Limits::default();
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./imagegram-data"),
            database_url: None,
            blob_url: None,
            database_pool: None,
            workers: None,
            rate_limit: OnOff::On,
            rate_limit_reads: 1200,
            rate_limit_writes: 300,
            rate_limit_uploads: 60,
            trusted_proxies: String::new(),
            max_pixels: image_limits.max_pixels,
            max_side: image_limits.max_side,
            image_memory_mib: 1024,
            feed_cache_ms: 1000,
            session_cache_ms: 1000,
            #[cfg(feature = "bench")]
            bench_ceiling_bytes: 0,
            job_lease_secs: 30,
            upload_expiry_secs: 24 * 3600,
            idle_timeout_secs: 60,
            max_connections: 8192,
            session_ttl_days: 30,
            max_event_streams: 4096,
            event_retention_secs: 7 * 24 * 3600,
            log_format: LogFormat::Text,
            debug_job_delay_ms: 0,
        }
    }
}

impl Settings {
    /// The defaults, under the file (if any), under what was given.
    fn layered(args: &ServerArgs) -> anyhow::Result<Settings> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &args.config {
            if !path.is_file() {
                bail!("reading {}: no such file", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(Serialized::defaults(given(args)?))
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))
    }

    /// The default of each setting as `--help` and the README show it; `None`
    /// for the computed ones.
    pub fn defaults_shown() -> Vec<(String, Option<String>)> {
        let table = match toml::Value::try_from(Settings::default()) {
            Ok(toml::Value::Table(table)) => table,
            _ => unreachable!("settings serialise to a table"),
        };
        let mut shown: Vec<_> = table
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    toml::Value::String(s) if s.is_empty() => "none".to_owned(),
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                (name, Some(text))
            })
            .collect();
        for computed in ["database_url", "blob_url", "database_pool", "workers"] {
            shown.push((computed.to_owned(), None));
        }
        shown
    }
}

/// The flags and variables that were given, as a figment layer.
fn given(args: &ServerArgs) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let serde_json::Value::Object(mut map) = serde_json::to_value(args)? else {
        unreachable!("arguments serialise to a map");
    };
    map.retain(|_, v| !v.is_null());
    Ok(map)
}

/// The CLI, with each server option's default from `Settings` in its help.
pub fn parse_cli() -> Cli {
    let defaults = Settings::defaults_shown();
    let show = |cmd: clap::Command| {
        defaults.iter().fold(cmd, |cmd, (name, shown)| {
            let Some(shown) = shown else { return cmd };
            let id = name.as_str();
            if cmd.get_arguments().all(|a| a.get_id() != id) {
                return cmd;
            }
            cmd.mut_arg(id, |arg| {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                arg.help(format!("{help} [default: {shown}]"))
            })
        })
    };
    let command = Cli::command()
        .mut_subcommand("serve", show)
        .mut_subcommand("worker", show);
    let matches = command.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

impl ServerArgs {
    /// Layers the defaults, the TOML file (if any) and what was given.
    pub fn resolve(self) -> anyhow::Result<Config> {
        Settings::layered(&self)?.resolve()
    }
}

impl Settings {
    fn resolve(self) -> anyhow::Result<Config> {
        let data_dir = self.data_dir;
        let database = match self.database_url {
            Some(url) => parse_database_url(&url)?,
            None => DatabaseUrl::Sqlite(data_dir.join("imagegram.db")),
        };
        let blobs = match self.blob_url {
            Some(url) => parse_blob_url(&url)?,
            None => BlobUrl::Local(data_dir.join("blobs")),
        };
        let workers = self.workers.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
            cpus.saturating_sub(1).max(1)
        });
        let rate_limits = (self.rate_limit == OnOff::On).then_some(crate::service::Budgets {
            reads: self.rate_limit_reads,
            writes: self.rate_limit_writes,
            uploads: self.rate_limit_uploads,
        });
        Ok(Config {
            listen: self.listen,
            data_dir,
            database,
            database_pool: self
                .database_pool
                .unwrap_or_else(default_database_pool)
                .max(1),
            blobs,
            workers,
            rate_limits,
            trusted_proxies: parse_proxies(&self.trusted_proxies)?,
            image_limits: imaging::Limits {
                max_pixels: self.max_pixels,
                max_side: self.max_side,
            },
            image_memory_budget: self.image_memory_mib.max(1) << 20,
            feed_cache_ttl: Duration::from_millis(self.feed_cache_ms),
            session_cache_ttl: Duration::from_millis(self.session_cache_ms),
            #[cfg(feature = "bench")]
            bench_ceiling_bytes: self.bench_ceiling_bytes,
            job_lease: Duration::from_secs(self.job_lease_secs.max(1)),
            upload_expiry: Duration::from_secs(self.upload_expiry_secs.max(1)),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs.max(1)),
            max_connections: self.max_connections.max(1),
            session_ttl: Duration::from_secs(self.session_ttl_days.max(1) * 24 * 3600),
            max_event_streams: self.max_event_streams.max(1),
            event_retention: Duration::from_secs(self.event_retention_secs.max(1)),
            log_format: self.log_format,
            debug_job_delay: Duration::from_millis(self.debug_job_delay_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_options() -> Vec<clap::Arg> {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve exists");
        serve
            .get_arguments()
            .filter(|a| !a.is_hide_set() && a.get_long().is_some())
            .cloned()
            .collect()
    }

    #[test]
    fn every_option_is_a_setting_and_every_setting_an_option() {
        let mut options: Vec<String> = server_options()
            .iter()
            .map(|a| a.get_id().to_string())
            .filter(|id| id != "config")
            .collect();
        options.push("debug_job_delay_ms".into());
        #[cfg(feature = "bench")]
        options.push("bench_ceiling_bytes".into());
        options.sort();
        let mut settings: Vec<String> = Settings::defaults_shown()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        settings.sort();
        assert_eq!(options, settings);
    }

    /// The README's configuration table lists every option, with its variable
    /// and the default `Settings::default` gives it.
    #[test]
    fn the_readme_table_matches_the_options_and_their_defaults() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a Configuration section");
        let rows: Vec<Vec<String>> = section
            .lines()
            .filter(|l| l.starts_with("| `--"))
            .map(|l| {
                l.split(" | ")
                    .map(|c| c.trim_matches(|c| c == '|' || c == ' ').to_owned())
                    .collect()
            })
            .collect();
        let code = |cell: &str| cell.split('`').nth(1).map(str::to_owned);
        let defaults = Settings::defaults_shown();
        let mut listed = Vec::new();
        for row in &rows {
            let flag = code(&row[0]).expect("a flag in backticks");
            let name = flag
                .trim_start_matches("--")
                .split(' ')
                .next()
                .unwrap()
                .replace('-', "_");
            let option = server_options()
                .into_iter()
                .find(|a| a.get_id() == name.as_str())
                .unwrap_or_else(|| panic!("README lists {flag}, which `serve` does not take"));
            let env = option.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(code(&row[1]), env, "the variable of {flag}");
            let shown = defaults
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, d)| d.clone());
            if let Some(default) = shown {
                let in_readme =
                    code(&row[2]).unwrap_or_else(|| row[2].split(' ').next().unwrap().to_owned());
                assert_eq!(in_readme, default, "the default of {flag}");
            }
            listed.push(name);
        }
        let mut all: Vec<String> = server_options()
            .iter()
            .map(|a| a.get_id().to_string())
            .collect();
        all.sort();
        listed.sort();
        assert_eq!(listed, all, "the README lists every option of `serve`");
    }

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
