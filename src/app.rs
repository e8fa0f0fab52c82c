//! Assembles a running node from its configuration: storage, services, the
//! HTTP server and the in-process workers.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{BlobUrl, Config, DatabaseUrl};
use crate::service::{ServiceSettings, Services};
use crate::store::postgres::PgStore;
use crate::store::rate_limits::{MemoryRateLimits, RateLimits};
use crate::store::sqlite::SqliteStore;
use crate::store::{BlobStore, LocalBlobStore, ObjectBlobStore, Store};
use crate::worker::{Worker, WorkerConfig};

/// Opens the database, and the rate-limit state that goes with it: in memory
/// for the single-node embedded default, shared in the database when scaled out.
pub async fn open_backend(
    database: &DatabaseUrl,
    pool: usize,
) -> anyhow::Result<(Arc<dyn Store>, Arc<dyn RateLimits>)> {
    match database {
        DatabaseUrl::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let path = path.clone();
            let store =
                tokio::task::spawn_blocking(move || SqliteStore::open(&path, sqlite_readers()))
                    .await??;
            Ok((Arc::new(store), Arc::new(MemoryRateLimits::default())))
        }
        DatabaseUrl::Postgres(url) => {
            let store = Arc::new(PgStore::connect(url, pool).await?);
            Ok((store.clone(), store))
        }
    }
}

/// Reader threads for the embedded database: two per core, so a reader
/// waiting on the disk leaves the cores busy. More only queue for the cores:
/// with deep feed pages offered at 9,000/s on 2 cores, 8 readers measured a
/// p99 of 34 and 58 ms against 7 and 39 ms for 4 (alternating runs).
fn sqlite_readers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    (2 * cores).max(4) as u32
}

pub async fn open_store(database: &DatabaseUrl) -> anyhow::Result<Arc<dyn Store>> {
    Ok(
        open_backend(database, crate::config::default_database_pool())
            .await?
            .0,
    )
}

pub fn open_blobs(blobs: &BlobUrl) -> anyhow::Result<Arc<dyn BlobStore>> {
    match blobs {
        BlobUrl::Local(dir) => Ok(Arc::new(LocalBlobStore::open(dir)?)),
        BlobUrl::S3(bucket) => Ok(Arc::new(ObjectBlobStore::s3(bucket)?)),
    }
}

pub async fn services(config: &Config) -> anyhow::Result<Services> {
    if !imaging::jpeg_simd_enabled() {
        tracing::warn!(
            "the JPEG codec runs without SIMD on this machine (built without NASM, or a CPU \
             without SSE2): image processing is several times slower; see scripts/build-tools"
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let (store, rate_limits) = open_backend(&config.database, config.database_pool).await?;
    if store.has_set_aside().await? {
        anyhow::bail!(
            "this database is the target of an unfinished `imagegram migrate` (its indexes are \
             set aside until the copy ends): run the same migrate again to finish it"
        );
    }
    let blobs = open_blobs(&config.blobs)?;
    let settings = ServiceSettings {
        image_limits: config.image_limits,
        staging_dir: config.data_dir.join("staging"),
        upload_ttl: config.upload_expiry,
        event_retention: config.event_retention,
        rate_limits: config.rate_limits.map(|budgets| (rate_limits, budgets)),
        trusted_proxies: config.trusted_proxies.clone(),
        feed_cache_ttl: config.feed_cache_ttl,
        session_cache_ttl: config.session_cache_ttl,
        session_ttl: config.session_ttl,
        max_event_streams: config.max_event_streams,
    };
    Services::new(store, blobs, settings).await
}

/// The node's image worker (at least one job at a time).
pub fn worker(services: &Services, config: &Config) -> anyhow::Result<Worker> {
    Worker::new(
        services.clone(),
        WorkerConfig {
            concurrency: config.workers.max(1),
            memory_budget: config.image_memory_budget,
            lease: config.job_lease,
            poll_interval: std::time::Duration::from_secs(2),
            max_attempts: 5,
            image_limits: config.image_limits,
            debug_delay: config.debug_job_delay,
        },
    )
}

/// A node running in the background.
pub struct Running {
    /// Where the API listens (None for worker-only nodes).
    pub addr: Option<SocketAddr>,
    pub services: Services,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting work, lets requests in flight finish, and waits.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Starts the API server (and workers unless `config.workers` is 0).
pub async fn serve(config: Config) -> anyhow::Result<Running> {
    let services = services(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    #[cfg(feature = "bench")]
    if config.bench_ceiling_bytes > 0 {
        crate::api::bench::set_ceiling_bytes(config.bench_ceiling_bytes);
    }
    let app = crate::api::router(services.clone());
    let stop = shutdown.clone();
    let limits = crate::api::server::ConnectionLimits {
        idle_timeout: config.idle_timeout,
        max_connections: config.max_connections,
    };
    tasks.push(tokio::spawn(async move {
        crate::api::server::serve(listener, app, limits, stop).await
    }));
    if config.workers > 0 {
        let w = worker(&services, &config)?;
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move { w.run(stop).await }));
    }
    tasks.push(tokio::spawn(crate::worker::sweeper::run(
        services.clone(),
        shutdown.clone(),
    )));
    Ok(Running {
        addr: Some(addr),
        services,
        shutdown,
        tasks,
    })
}

/// Starts image workers only.
pub async fn work(mut config: Config) -> anyhow::Result<Running> {
    config.workers = config.workers.max(1);
    let services = services(&config).await?;
    let shutdown = CancellationToken::new();
    let w = worker(&services, &config)?;
    let stop = shutdown.clone();
    let task = tokio::spawn(async move { w.run(stop).await });
    let sweeper = tokio::spawn(crate::worker::sweeper::run(
        services.clone(),
        shutdown.clone(),
    ));
    Ok(Running {
        addr: None,
        services,
        shutdown,
        tasks: vec![task, sweeper],
    })
}
