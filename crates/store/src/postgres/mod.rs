//! The scale-out backend: PostgreSQL through sqlx. Every node (API or worker)
//! connects to the same database; nothing a request needs lives in a node.
//! Jobs wake workers on any node through LISTEN/NOTIFY.

mod accounts;
mod batches;
mod comment_batches;
mod comment_deletions;
mod comments;
mod events;
mod exports;
mod idempotency;
mod jobs;
mod pool;
mod posts;
mod rate_limits;
mod read_batches;
mod rows;
mod safety;
mod transfer;
mod uploads;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;

use domain::Timestamp;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

use super::{BlobGc, POST_RENDERER, PostRenderer, Store, StoreError, StoreResult};

/// The channel `create_post` notifies when it queues a job.
const JOBS_CHANNEL: &str = "imagegram_jobs";

pub struct PgStore {
    pool: pool::Pool,
    /// New comments go through here: group commit (`comment_batches`).
    comment_batches: comment_batches::CommentBatcher,
    /// Comment deletions likewise (`comment_deletions`).
    deletion_batches: comment_deletions::DeletionBatcher,
    /// Single posts and feed pages are read through these (`read_batches`).
    post_reads: read_batches::PostReader,
    page_reads: read_batches::PageReader,
    jobs_queued: Arc<Notify>,
    event_wakers: Arc<super::wakers::EventWakers>,
    /// Writes the rendering kept beside each post.
    render: PostRenderer,
    /// Ends the notification listener (and its connection) when the store goes.
    stop_listening: tokio::sync::watch::Sender<bool>,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        pool::note_failure(&e);
        StoreError::Backend(e.into())
    }
}

impl PgStore {
    /// Connects, runs the migrations and starts listening for job
    /// notifications.
    pub async fn connect(url: &str, max_connections: usize) -> anyhow::Result<Self> {
        let options: PgConnectOptions = url.parse().context("the PostgreSQL URL")?;
        // Every statement here is an index lookup whose best plan does not
        // depend on its parameters, and sqlx prepares each once per
        // connection. PostgreSQL would still plan some of them anew on every
        // execution: it keeps "custom" plans when the generic plan's estimate
        // is higher, as for the feed's row-value range (measured: 130 µs of
        // planning for a 25 µs index scan on every deep page).
        //
        // JIT compilation is off: it starts when a plan's estimated cost
        // passes a threshold, and a batch of feed pages (`read_batches`),
        // estimated from a generic LIMIT, passes it; compiling takes ~20 ms
        // for a statement that runs in well under one.
        let options = options.options([("plan_cache_mode", "force_generic_plan"), ("jit", "off")]);
        let pool = pool::pool(options.clone(), max_connections, Duration::from_secs(10))?;
        let mut conn = pool::get(&pool).await.context("connecting to PostgreSQL")?;
        // Migrations take an advisory lock, so nodes starting together migrate once.
        sqlx::migrate!("migrations/postgres")
            .run(&mut *conn)
            .await
            .context("migrating the PostgreSQL database")?;
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        sqlx::query("INSERT INTO settings (name, value) VALUES ('cursor_key', $1) ON CONFLICT (name) DO NOTHING")
            .bind(key.as_slice())
            .execute(&mut *conn)
            .await?;
        drop(conn);
        let jobs_queued = Arc::new(Notify::new());
        let event_wakers = Arc::new(super::wakers::EventWakers::default());
        // LISTEN holds a connection of its own, outside the pool.
        let listener = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let (stop_listening, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(listen(
            listener,
            stopped,
            jobs_queued.clone(),
            event_wakers.clone(),
        ));
        Ok(PgStore {
            comment_batches: comment_batches::comment_batcher(pool.clone(), POST_RENDERER),
            deletion_batches: comment_deletions::deletion_batcher(pool.clone(), POST_RENDERER),
            post_reads: read_batches::post_reader(pool.clone()),
            page_reads: read_batches::page_reader(pool.clone(), POST_RENDERER.version),
            pool,
            jobs_queued,
            event_wakers,
            render: POST_RENDERER,
            stop_listening,
        })
    }

    /// A connection from the pool, for one statement or a transaction.
    async fn conn(&self) -> sqlx::Result<pool::Conn> {
        pool::get(&self.pool).await
    }
}

impl Drop for PgStore {
    /// Ends the pool and the notification listener: a tool that opens a
    /// store and drops it (`migrate`) leaves no connection behind.
    fn drop(&mut self) {
        self.pool.close();
        self.stop_listening.send_replace(true);
    }
}

/// Forwards NOTIFYs to local waiters, reconnecting if the connection drops.
/// A missed notification only delays a job or an event until the next poll.
async fn listen(
    listener_pool: PgPool,
    mut stop: tokio::sync::watch::Receiver<bool>,
    jobs: Arc<Notify>,
    events: Arc<super::wakers::EventWakers>,
) {
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&listener_pool).await?;
            listener
                .listen_all([JOBS_CHANNEL, rows::EVENTS_CHANNEL])
                .await?;
            loop {
                let notification = listener.recv().await?;
                if notification.channel() == JOBS_CHANNEL {
                    jobs.notify_one();
                } else if let Ok(user) = notification.payload().parse::<uuid::Uuid>() {
                    events.wake(domain::UserId::from_uuid(user));
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            // The store is gone (or its sender dropped): close the connection.
            _ = async { stop.wait_for(|stopped| *stopped).await.is_ok() } => {
                listener_pool.close().await;
                return;
            }
            lost = listening => if let Err(e) = lost {
                tracing::warn!(error = %e, "job notification listener lost its connection; reconnecting");
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[async_trait]
impl BlobGc for PgStore {
    async fn pending_blob_deletions(&self, limit: u32) -> StoreResult<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT key FROM blob_deletions ORDER BY created_at LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&mut *self.conn().await?)
                .await?,
        )
    }

    async fn blob_deletion_done(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM blob_deletions WHERE key = $1")
            .bind(key)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn queue_blob_deletion(&self, key: &str) -> StoreResult<()> {
        rows::queue_blob_deletion(&mut *self.conn().await?, key).await?;
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn cursor_key(&self) -> StoreResult<Vec<u8>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'cursor_key'")
                .fetch_one(&mut *self.conn().await?)
                .await?,
        )
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn take_turn(&self, name: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let n = sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) \
             DO UPDATE SET value = excluded.value WHERE settings.value <= $3",
        )
        .bind(format!("turn:{name}"))
        .bind(super::turn_value(until))
        .bind(super::turn_value(now))
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(n.rows_affected() == 1)
    }
}
