//! The services: Imagegram's use cases (sign up, post, comment, upload, the
//! feed …) over the storage traits. No SQL and no HTTP types here. Handlers
//! pass client input as it came; each service validates it through the domain
//! types' parsers, so every entry point gets the same checks, and the rules
//! themselves are domain functions (see docs/ARCHITECTURE.md).

mod accounts;
mod comments;
mod errors;
mod events;
mod exports;
mod feed_cache;
mod hidden;
mod idempotency;
mod orphans;
mod pages;
mod posts;
mod rate_limits;
mod safety;
mod session_cache;
mod uploads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use domain::CursorKey;
use store::{BlobStore, Store};

pub use accounts::{Account, SESSIONS_LISTED, Session, SessionInfo, Token};
pub use errors::{ServiceError, ServiceResult};
pub use events::EventStreamSlots;
pub use hidden::{Blocks, FirstPosts, HiddenAuthors, Hiding, MAX_BLOCKS};
pub use idempotency::{CLAIM_RENEW_EVERY, IDEMPOTENCY_RETENTION};
pub use orphans::ORPHAN_AGE;
pub use pages::Page;
pub use posts::{CreatePost, EditPost, MAX_IMAGE_BYTES, StagedImage};
pub use rate_limits::{Budgets, Class, RateCheck};
pub use safety::{Actor, ReportInput, ResolveInput, Resolved};
pub use session_cache::SessionCache;
pub use store::ReportGroup;
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

/// Staging files older than this belong to no running request.
const STAGING_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// How a node's services behave. Every value comes from the configuration,
/// which holds the defaults (`Settings` in the binary's `config.rs`).
pub struct ServiceSettings {
    pub image_limits: imaging::Limits,
    /// Where request bodies are spooled before they are checked and stored.
    pub staging_dir: PathBuf,
    /// How long an unfinished upload lives after its last append.
    pub upload_ttl: Duration,
    /// How long notifications are kept for streams to resume from.
    pub event_retention: Duration,
    /// Rate-limit state and budgets; `None` when limits are off.
    pub rate_limits: Option<rate_limits::Limiter>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a first feed page outdated by another process may be served.
    pub feed_cache_ttl: Duration,
    /// How long a checked bearer token is trusted without asking the database.
    pub session_cache_ttl: Duration,
    /// Sessions unused this long are refused and removed.
    pub session_ttl: Duration,
    /// Event streams open at once on this node.
    pub max_event_streams: usize,
}

/// What `Services` holds.
pub struct ServiceParts {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub settings: ServiceSettings,
    cursor_key: CursorKey,
    /// Rendered first pages of the feed (see `feed_cache.rs`).
    pub feed_cache: Arc<FeedCache>,
    /// Bearer tokens recently checked (see `session_cache.rs`).
    pub sessions: SessionCache,
    /// Accounts being deleted, hidden from every read (see `hidden.rs`).
    gone: hidden::GoneAuthors,
    /// Where the orphan sweep goes on in each blob prefix (see `orphans.rs`).
    orphan_scan: std::sync::Mutex<std::collections::HashMap<&'static str, String>>,
    /// Open event streams, bounded per user and per node (see `events.rs`).
    pub event_streams: Arc<EventStreamSlots>,
}

impl Services {
    pub async fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        settings: ServiceSettings,
    ) -> anyhow::Result<Self> {
        let key = store.cursor_key().await?;
        let cursor_key = CursorKey::from_bytes(&key)
            .ok_or_else(|| anyhow::anyhow!("stored cursor key has the wrong length"))?;
        std::fs::create_dir_all(&settings.staging_dir)?;
        Ok(Services(Arc::new(ServiceParts {
            store,
            blobs,
            cursor_key,
            feed_cache: Arc::new(FeedCache::new(settings.feed_cache_ttl)),
            sessions: SessionCache::new(settings.session_cache_ttl),
            gone: hidden::GoneAuthors::new(settings.feed_cache_ttl),
            orphan_scan: Default::default(),
            event_streams: Arc::new(EventStreamSlots::new(settings.max_event_streams)),
            settings,
        })))
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
        let dir = self.settings.staging_dir.clone();
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
    pub async fn job_queue_stats(&self) -> anyhow::Result<(u64, Option<Duration>)> {
        Ok(self.store.queue_stats(domain::now()).await?)
    }

    /// Answers when the database and the blob store both do.
    pub async fn readiness(&self) -> anyhow::Result<()> {
        self.store.ping().await?;
        self.blobs.check().await
    }
}
