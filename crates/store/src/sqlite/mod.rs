//! The embedded backend: one SQLite file in WAL mode, where a commit is on disk
//! before it is acknowledged. Writes go through one connection with group
//! commit, its own WAL fsyncs and a checkpointer (`writer.rs`) — SQLite has one writer anyway,
//! and serialising in-process is cheaper than lock retries — while reads run on
//! dedicated reader threads, one connection each (`readers.rs`). rusqlite never
//! runs on the async runtime.

mod accounts;
mod comments;
mod events;
mod exports;
mod idempotency;
mod jobs;
mod posts;
mod readers;
mod rows;
mod safety;
#[cfg(feature = "bench")]
mod seed;
mod shared_map;
mod transfer;
mod uploads;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use async_trait::async_trait;

use domain::Timestamp;
use rusqlite::{Connection, OpenFlags, Transaction};
use rusqlite_migration::{M, Migrations};
use tokio::sync::Notify;

use super::{BlobGc, POST_RENDERER, PostRenderer, Store, StoreError, StoreResult};

pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_uploads_idempotency.sql"),
    include_str!("../../migrations/sqlite/0003_post_versions.sql"),
    include_str!("../../migrations/sqlite/0004_events.sql"),
    include_str!("../../migrations/sqlite/0005_events_append_only.sql"),
    include_str!("../../migrations/sqlite/0006_rendered_posts.sql"),
    include_str!("../../migrations/sqlite/0007_takeovers_and_leases.sql"),
    include_str!("../../migrations/sqlite/0008_alt_text.sql"),
    include_str!("../../migrations/sqlite/0009_roles.sql"),
    include_str!("../../migrations/sqlite/0010_reports.sql"),
    include_str!("../../migrations/sqlite/0011_blocks.sql"),
    include_str!("../../migrations/sqlite/0012_account_deletion.sql"),
    include_str!("../../migrations/sqlite/0013_image_bans.sql"),
    include_str!("../../migrations/sqlite/0014_exports.sql"),
    include_str!("../../migrations/sqlite/0015_suspensions.sql"),
];

pub struct SqliteStore {
    /// The one write connection; the group writer's thread holds it while it
    /// commits, and the benchmarks' bulk loader between commits.
    #[cfg(feature = "bench")]
    writer: Arc<Mutex<Connection>>,
    group: writer::GroupWriter,
    readers: readers::Readers,
    /// Wakes in-process workers when a job is queued.
    jobs_queued: Arc<Notify>,
    /// Wakes a user's event streams when an event for them is written.
    event_wakers: Arc<super::wakers::EventWakers>,
    /// Writes the rendering kept beside each post.
    render: PostRenderer,
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Query-planner stability: without it, a build with STAT4 (rusqlite's bundled
    // SQLite) re-plans every statement whose range bounds are bound parameters each
    // time the values change — every deep feed page spent a fifth of its CPU in
    // sqlite3Reprepare. Our statements are written for one plan (see posts.rs).
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    // mmap_size: pages are handed out of the file's map instead of copied in
    // with pread (a tenth of a deep feed page's CPU at 256 MiB). The map is
    // the shared one of shared_map.rs, which sets its size; any mmap_size
    // above zero turns its use on.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -65536;
         PRAGMA mmap_size = 1073741824;
         PRAGMA temp_store = MEMORY;",
    )
}

/// Opens the database at `path` through the shared-map VFS (`shared_map.rs`).
fn open_connection(path: &Path, flags: OpenFlags) -> anyhow::Result<Connection> {
    Connection::open_with_flags_and_vfs(path, flags, shared_map::vfs())
        .with_context(|| format!("opening {}", path.display()))
}

/// A read connection to the open database at `path`.
fn open_reader(path: &Path) -> anyhow::Result<Connection> {
    let conn = open_connection(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    configure(&conn)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs migrations.
    pub fn open(path: &Path, readers: u32) -> anyhow::Result<Self> {
        let mut writer = open_connection(path, OpenFlags::default())?;
        configure(&writer)?;
        let migrations = Migrations::new(MIGRATIONS.iter().map(|sql| M::up(sql)).collect());
        migrations
            .to_latest(&mut writer)
            .context("migrating the SQLite database")?;
        writer.execute(
            "INSERT OR IGNORE INTO settings (name, value) VALUES ('cursor_key', randomblob(32))",
            [],
        )?;
        let checkpoints = open_reader(path)?;
        let reader_path = path.to_owned();
        let readers = readers::Readers::start(readers, move || open_reader(&reader_path))?;
        let writer = Arc::new(Mutex::new(writer));
        Ok(SqliteStore {
            group: writer::GroupWriter::start(writer.clone(), checkpoints, path)?,
            #[cfg(feature = "bench")]
            writer,
            readers,
            jobs_queued: Arc::new(Notify::new()),
            event_wakers: Arc::default(),
            render: POST_RENDERER,
        })
    }

    /// Runs `f` on a read connection on one of the reader threads.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        self.readers.read(f).await
    }

    /// Runs `f` in a transaction on the writer, committing if it returns Ok
    /// (with whatever other writes are waiting: see `writer.rs`).
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.group.write(f).await
    }
}

/// `?` on rusqlite errors inside write closures.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.into())
    }
}

#[async_trait]
impl BlobGc for SqliteStore {
    async fn pending_blob_deletions(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT key FROM blob_deletions ORDER BY created_at LIMIT ?1")?;
            let keys = stmt
                .query_map([limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(keys)
        })
        .await
    }

    async fn blob_deletion_done(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |tx| {
            tx.execute("DELETE FROM blob_deletions WHERE key = ?1", [key])?;
            Ok(())
        })
        .await
    }

    async fn queue_blob_deletion(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |tx| {
            rows::queue_blob_deletion(tx, &key)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn cursor_key(&self) -> StoreResult<Vec<u8>> {
        self.read(|conn| {
            Ok(conn.query_row(
                "SELECT value FROM settings WHERE name = 'cursor_key'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        if let Some(why) = self.group.broken() {
            return Err(StoreError::Backend(anyhow::anyhow!(
                "writes are stopped until a restart: {why}"
            )));
        }
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn take_turn(&self, name: &str, now: Timestamp, until: Timestamp) -> StoreResult<bool> {
        let name = format!("turn:{name}");
        self.write(move |tx| {
            let n = tx.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) \
                 DO UPDATE SET value = excluded.value WHERE settings.value <= ?3",
                rusqlite::params![name, super::turn_value(until), super::turn_value(now)],
            )?;
            Ok(n == 1)
        })
        .await
    }
}
