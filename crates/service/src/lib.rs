//! Domain services: the rules of Imagegram over the storage traits. No SQL
//! and no HTTP types here; handlers call these with validated input.

mod accounts;
mod comments;
mod errors;
mod events;
mod feed_cache;
mod idempotency;
mod orphans;
mod pages;
mod posts;
mod rate_limits;
mod session_cache;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;

use domain::CursorKey;
use store::{BlobStore, Store};

pub use accounts::{Session, Token};
pub use errors::{ServiceError, ServiceResult};
pub use events::EventStreamSlots;
pub use idempotency::{CLAIM_RENEW_EVERY, IDEMPOTENCY_RETENTION};
pub use orphans::ORPHAN_AGE;
pub use pages::Page;
pub use posts::{CreatePost, EditPost, MAX_IMAGE_BYTES, StagedImage};
pub use rate_limits::{Budgets, Class, RateCheck};
pub use session_cache::SessionCache;
pub use uploads::{AppendLease, Digest};

pub use feed_cache::{CachedPage, FeedCache, PageShape};

/// Everything a request needs, shared by all handlers. One `Arc`: axum's state
/// and each middleware clone it for every request, and a clone of the parts
/// themselves (a path, a proxy list, several `Arc`s) cost allocations each time.
#[derive(Clone)]
pub struct Services(Arc<ServiceParts>);

impl std::ops::Deref for Services {
    type Target = ServiceParts;

    fn deref(&self) -> &ServiceParts {
        &self.0
    }
}

impl From<ServiceParts> for Services {
    fn from(parts: ServiceParts) -> Self {
        Services(Arc::new(parts))
    }
}

/// Staging files older than this belong to no running request.
const STAGING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What `Services` holds; settable until it becomes `Services`.
pub struct ServiceParts {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    cursor_key: CursorKey,
    image_limits: imaging::Limits,
    /// Where request bodies are spooled before they are checked and stored.
    pub staging_dir: PathBuf,
    /// How long an unfinished upload lives after its last append.
    pub upload_ttl: std::time::Duration,
    /// How long notifications are kept for streams to resume from.
    pub event_retention: std::time::Duration,
    /// Rate-limit state and budgets; `None` when limits are off.
    pub rate_limits: Option<rate_limits::Limiter>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Rendered first pages of the feed (see `feed_cache.rs`).
    pub feed_cache: Arc<FeedCache>,
    /// Bearer tokens recently checked (see `session_cache.rs`).
    pub sessions: SessionCache,
    /// Sessions unused this long are refused and removed.
    pub session_ttl: std::time::Duration,
    /// Where the orphan sweep goes on in each blob prefix (see `orphans.rs`).
    orphan_scan: std::sync::Mutex<std::collections::HashMap<&'static str, String>>,
    /// Open event streams, bounded per user and per node (see `events.rs`).
    pub event_streams: Arc<EventStreamSlots>,
}

impl ServiceParts {
    pub async fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        image_limits: imaging::Limits,
        staging_dir: PathBuf,
    ) -> anyhow::Result<Self> {
        let key = store.cursor_key().await?;
        let cursor_key = CursorKey::from_bytes(&key)
            .ok_or_else(|| anyhow::anyhow!("stored cursor key has the wrong length"))?;
        std::fs::create_dir_all(&staging_dir)?;
        Ok(ServiceParts {
            store,
            blobs,
            cursor_key,
            image_limits,
            staging_dir,
            upload_ttl: std::time::Duration::from_secs(24 * 3600),
            event_retention: std::time::Duration::from_secs(7 * 24 * 3600),
            rate_limits: None,
            trusted_proxies: Vec::new(),
            feed_cache: Arc::new(FeedCache::new(std::time::Duration::from_secs(1))),
            sessions: SessionCache::new(std::time::Duration::from_secs(1)),
            session_ttl: std::time::Duration::from_secs(30 * 24 * 3600),
            orphan_scan: Default::default(),
            event_streams: Arc::new(EventStreamSlots::new(EventStreamSlots::DEFAULT_PER_NODE)),
        })
    }
}

impl Services {
    /// Deletes blobs orphaned by committed deletions; safe to call from anywhere, any time.
    pub async fn collect_garbage(&self) -> anyhow::Result<usize> {
        let mut done = 0;
        loop {
            let keys = self.store.pending_blob_deletions(100).await?;
            if keys.is_empty() {
                return Ok(done);
            }
            for key in keys {
                self.blobs.delete(&key).await?;
                self.store.blob_deletion_done(&key).await?;
                done += 1;
            }
        }
    }

    /// Removes staging files a crashed process left behind: files in use are
    /// at most as old as the longest request body, far less than `STAGING_MAX_AGE`.
    pub async fn clean_staging(&self) -> anyhow::Result<usize> {
        let dir = self.staging_dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > STAGING_MAX_AGE);
                if meta.is_file() && old && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await?
    }

    /// Image jobs waiting or running, and the age of the oldest.
    pub async fn job_queue_stats(&self) -> anyhow::Result<(u64, Option<std::time::Duration>)> {
        Ok(self.store.queue_stats(domain::now()).await?)
    }

    /// Answers when the database and the blob store both do.
    pub async fn readiness(&self) -> anyhow::Result<()> {
        self.store.ping().await?;
        self.blobs.check().await
    }
}
