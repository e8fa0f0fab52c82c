//! The PostgreSQL store's connections: sqlx connections in a deadpool pool.
//!
//! sqlx's own pool talks to the server whenever it takes a connection back
//! (a Sync round trip on every release, to flush what a cancelled query may
//! have left) and, by default, before it hands one out: on a one-statement
//! read that doubles or triples the round trips, and each costs both
//! processes a wake-up (measured in BENCHMARKS.md, "PostgreSQL at the speed of
//! its engine"). deadpool hands connections out and takes them back without
//! a word to the server. What sqlx's release check guarded against is handled
//! by sqlx itself: a connection starts every statement by reading whatever a
//! cancelled one left unread, and a dropped transaction has queued its
//! ROLLBACK. A connection is checked with a round trip only when it sat idle
//! (the server may have restarted meanwhile) or when any connection failed
//! since it was last checked, so a broken one is replaced rather than handed
//! out again.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool::managed::{Manager, Metrics, Object, PoolError, RecycleResult};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

/// How long a connection may go unused before it is checked before use.
const IDLE_BEFORE_CHECK: Duration = Duration::from_secs(5);

/// Connection-level failures (I/O, protocol) seen in this process.
static FAILURES: AtomicU64 = AtomicU64::new(0);

pub type Pool = deadpool::managed::Pool<Connector>;

pub fn pool(options: PgConnectOptions, size: usize, wait: Duration) -> anyhow::Result<Pool> {
    Ok(Pool::builder(Connector { options })
        .max_size(size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .runtime(deadpool::Runtime::Tokio1)
        .build()?)
}

pub struct Connector {
    options: PgConnectOptions,
}

pub struct Pooled {
    conn: PgConnection,
    /// `FAILURES` when this connection was last known good.
    failures_seen: u64,
}

impl Manager for Connector {
    type Type = Pooled;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Pooled, sqlx::Error> {
        let failures_seen = FAILURES.load(Ordering::Relaxed);
        let conn = self.options.connect().await?;
        Ok(Pooled {
            conn,
            failures_seen,
        })
    }

    async fn recycle(&self, pooled: &mut Pooled, metrics: &Metrics) -> RecycleResult<sqlx::Error> {
        let failures = FAILURES.load(Ordering::Relaxed);
        if pooled.failures_seen != failures || metrics.last_used() >= IDLE_BEFORE_CHECK {
            pooled.conn.ping().await?;
            pooled.failures_seen = failures;
        }
        Ok(())
    }
}

/// Notes a failure that may have broken a connection, so that every pooled
/// connection is checked once before its next use.
pub fn note_failure(e: &sqlx::Error) {
    if matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_)
    ) {
        FAILURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection taken from the pool; it goes back when dropped.
pub struct Conn(Object<Connector>);

impl Deref for Conn {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0.conn
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0.conn
    }
}

pub async fn get(pool: &Pool) -> sqlx::Result<Conn> {
    match pool.get().await {
        Ok(object) => Ok(Conn(object)),
        Err(PoolError::Backend(e)) => Err(e),
        Err(PoolError::Timeout(_)) => Err(sqlx::Error::PoolTimedOut),
        Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
        Err(e) => Err(sqlx::Error::Configuration(e.to_string().into())),
    }
}
