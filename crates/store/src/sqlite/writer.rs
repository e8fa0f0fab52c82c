//! Group commit for the embedded database. Every write is a closure sent to
//! one writer thread, which takes whatever writes are waiting, runs each in its
//! own SAVEPOINT inside one IMMEDIATE transaction, and commits once. Batching is
//! by what is already waiting, never by delay: a lone write commits at once. A
//! write that fails rolls back to its savepoint and fails alone; a failed
//! commit fails the whole group.
//!
//! Three threads, so that the disk and the CPU work at the same time:
//! - the **writer** runs the groups' SQL and commits them into the WAL with
//!   `synchronous=NORMAL` (no fsync in COMMIT), then goes straight on to the
//!   next group;
//! - the **syncer** fsyncs the WAL after each commit — one fsync for every
//!   group committed since its last one — and only then answers the groups'
//!   callers: a write is acknowledged only once it is on disk, exactly as with
//!   `synchronous=FULL`, but the next group's SQL no longer waits for the
//!   previous group's fsync. (A commit is visible to readers for the length of
//!   one fsync before it is durable: a crash in that window can take back a
//!   comment someone has seen, never one that was acknowledged. Writes answer
//!   only after a sync that covers everything committed before them, so a
//!   response derived from earlier writes — an idempotent replay — is durable.)
//! - the **checkpointer** copies the WAL back into the database file on its own
//!   connection, trailing the writer closely: each pass copies only what was
//!   committed since the last one, so the database file's fsync is small and a
//!   WAL fsync never queues behind a large one on the disk. Run on the writer
//!   thread, checkpoints were a third of its time, with no commits meanwhile.
//!   The writer rewinds the WAL (SQLite does so at the start of a write when
//!   everything has been checkpointed) once it passes `REWIND_FRAMES`, waiting
//!   for the checkpointer's current pass.
//!
//! Written here because no SQLite crate offers group commit.

use std::cell::Cell;
use std::ffi::c_int;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::anyhow;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::{StoreError, StoreResult};

/// Most writes folded into one transaction, so a long queue still commits often.
const MAX_GROUP: usize = 256;

/// WAL frames after which the writer waits for the checkpointer to catch up,
/// so that its next transaction starts the WAL over (16,384 frames: 64 MiB of
/// 4 KiB pages). Readers look pages up in the WAL's index, so it is kept short.
const REWIND_FRAMES: c_int = 16_384;

thread_local! {
    /// Frames in the WAL after this thread's last commit, as SQLite reports it to
    /// the WAL hook (a plain function pointer: it cannot capture state, and the hook
    /// runs on the committing thread).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

fn record_wal_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// Answers a caller once the group's commit outcome is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A group the writer has committed (or failed to), on its way to the syncer.
struct Committed {
    replies: Vec<Reply>,
    outcome: Result<(), String>,
}

/// A write: runs inside the group's transaction; says whether it succeeded.
type Op = Box<dyn FnOnce(&Transaction<'_>) -> (bool, Reply) + Send>;

/// What the writer and the checkpointer tell each other, in WAL frames.
#[derive(Default)]
struct WalProgress {
    /// Frames copied into the database file (and fsynced) by the last pass.
    checkpointed: c_int,
    /// The commits that pass covered (it started after the last of them).
    covered: u64,
    /// The writer's commits so far: the checkpointer runs a pass whenever this moved.
    commits: u64,
    /// The writer has stopped; the checkpointer finishes too.
    stopped: bool,
}

#[derive(Default)]
struct Wal {
    progress: Mutex<WalProgress>,
    changed: Condvar,
}

impl Wal {
    fn lock(&self) -> std::sync::MutexGuard<'_, WalProgress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut WalProgress)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

#[derive(Clone)]
pub(super) struct GroupWriter {
    ops: Sender<Op>,
    /// Set for good once a WAL fsync failed.
    broken: Arc<Mutex<Option<String>>>,
}

impl GroupWriter {
    /// Starts the writer on `conn` (the database at `path`) and the
    /// checkpointer on `checkpoints`, a second connection to it.
    pub(super) fn start(
        conn: Arc<Mutex<Connection>>,
        checkpoints: Connection,
        path: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let mut wal_path = path.as_os_str().to_owned();
        wal_path.push("-wal");
        Self::start_with(conn, checkpoints, wal_path.into(), REWIND_FRAMES)
    }

    fn start_with(
        conn: Arc<Mutex<Connection>>,
        checkpoints: Connection,
        wal_path: PathBuf,
        rewind_frames: c_int,
    ) -> anyhow::Result<Self> {
        {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            // Replaces SQLite's automatic checkpoint (which is itself a WAL hook).
            conn.wal_hook(Some(record_wal_frames));
            // The syncer fsyncs the WAL, so the database must be in WAL mode.
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
            anyhow::ensure!(
                mode.eq_ignore_ascii_case("wal"),
                "the database is in journal mode {mode}, not WAL (does its filesystem support shared memory?)"
            );
            // The syncer makes each commit durable before it is acknowledged.
            conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        }
        let wal_file = WalFile::new(wal_path);
        let wal = Arc::new(Wal::default());
        let (ops, queue) = channel::<Op>();
        let (committed, to_sync) = channel::<Committed>();
        let checkpointer_wal = wal.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_continuously(&checkpoints, &checkpointer_wal))?;
        let broken = Arc::new(Mutex::new(None));
        let syncer_broken = broken.clone();
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || sync_continuously(wal_file, &to_sync, &syncer_broken))?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                run(&conn, &queue, &wal, &committed, rewind_frames);
                wal.update(|p| p.stopped = true);
            })?;
        Ok(GroupWriter { ops, broken })
    }

    /// Why this writer stopped acknowledging writes, if it did (see `sync_continuously`).
    pub(super) fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `f` in the next group; resolves after the group committed.
    pub(super) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<StoreResult<T>>();
        let op: Op = Box::new(move |tx| {
            let result = catch_unwind(AssertUnwindSafe(|| f(tx)))
                .unwrap_or_else(|_| Err(StoreError::Backend(anyhow!("a write panicked"))));
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |committed| {
                let out = match committed {
                    Ok(()) => result,
                    Err(why) => Err(StoreError::Backend(anyhow!("commit failed: {why}"))),
                };
                let _ = answer.send(out);
            });
            (ok, reply)
        });
        self.ops
            .send(op)
            .map_err(|_| StoreError::Backend(anyhow!("the SQLite writer has stopped")))?;
        answered.await.map_err(|_| {
            StoreError::Backend(anyhow!(
                "the write was not run: its group's transaction failed"
            ))
        })?
    }
}

fn run(
    conn: &Mutex<Connection>,
    queue: &Receiver<Op>,
    wal: &Wal,
    synced: &Sender<Committed>,
    rewind_frames: c_int,
) {
    let mut commits = 0;
    // Ends when every sender (the store and its clones) is gone.
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        let (replies, outcome) = commit_group(&mut conn, group);
        metrics::histogram!("sqlite_group_commit_size").record(replies.len() as f64);
        // Only fails once the syncer is gone, which drops (and so fails) the replies.
        let _ = synced.send(Committed { replies, outcome });
        let frames = WAL_FRAMES.get();
        commits += 1;
        wal.update(|p| p.commits = commits);
        if frames >= rewind_frames {
            wait_for_checkpoint(wal, frames, commits);
        }
    }
}

/// The syncer's loop: one fsync of the WAL for every group committed since
/// the last one, then their answers.
///
/// A failed fsync is fail-stop: after it, no write is ever acknowledged again
/// by this process. The kernel may have dropped the dirty pages it could not
/// write, and a later fsync can then succeed without them, so "the next sync
/// worked" proves nothing about the groups before it. A restart recovers from
/// what is really on disk; until then `/readyz` fails, so a load balancer
/// stops sending writes here.
fn sync_continuously(
    mut wal: WalFile,
    committed: &Receiver<Committed>,
    broken: &Mutex<Option<String>>,
) {
    while let Ok(first) = committed.recv() {
        let mut groups = vec![first];
        groups.extend(committed.try_iter());
        let stopped = broken.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let synced = if let Some(why) = stopped {
            Err(format!("writes are stopped until a restart: {why}"))
        } else if groups.iter().any(|g| g.outcome.is_ok()) {
            let started = std::time::Instant::now();
            let synced = wal.sync().map_err(|e| format!("syncing the WAL: {e}"));
            metrics::histogram!("sqlite_wal_sync_seconds").record(started.elapsed().as_secs_f64());
            synced
        } else {
            Ok(())
        };
        if let Err(e) = &synced {
            tracing::error!(error = %e, "a group's commit is not known to be durable");
            broken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| e.clone());
        }
        for group in groups {
            let outcome = group.outcome.and(synced.clone());
            for reply in group.replies {
                reply(outcome.clone());
            }
        }
    }
}

/// The database's WAL file, opened for fsync. Syncing any descriptor of a file
/// flushes that file; the file is reopened if SQLite has replaced it.
struct WalFile {
    path: PathBuf,
    file: Option<File>,
}

impl WalFile {
    fn new(path: PathBuf) -> Self {
        WalFile { path, file: None }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let current = std::fs::metadata(&self.path)?;
        let same = match &self.file {
            Some(f) => {
                let open = f.metadata()?;
                (open.dev(), open.ino()) == (current.dev(), current.ino())
            }
            None => false,
        };
        if !same {
            self.file = Some(File::open(&self.path)?);
        }
        self.file.as_ref().map_or(Ok(()), File::sync_data)
    }
}

/// Blocks until a checkpoint pass that started after the writer's commit
/// number `commits` has copied the WAL's `frames` frames, so that the next
/// write transaction starts the WAL over. Gives up after a while (a
/// long-running reader can hold a checkpoint back): the WAL then only grows
/// until a later attempt.
fn wait_for_checkpoint(wal: &Wal, frames: c_int, commits: u64) {
    let started = std::time::Instant::now();
    let progress = wal.lock();
    let (progress, timeout) = wal
        .changed
        .wait_timeout_while(progress, Duration::from_secs(1), |p| {
            (p.covered < commits || p.checkpointed < frames) && !p.stopped
        })
        .unwrap_or_else(|p| p.into_inner());
    drop(progress);
    if timeout.timed_out() {
        tracing::warn!(
            frames,
            "the WAL checkpoint is behind; the WAL keeps growing"
        );
    }
    metrics::histogram!("sqlite_wal_rewind_wait_seconds").record(started.elapsed().as_secs_f64());
}

/// The checkpointer's loop: a PASSIVE checkpoint (it waits for no one) after
/// every commit it has not yet covered, and again shortly after a pass that a
/// reader held back.
fn checkpoint_continuously(conn: &Connection, wal: &Wal) {
    let mut seen = 0;
    let mut behind = false;
    loop {
        let progress = wal.lock();
        let idle = |p: &mut WalProgress| p.commits == seen && !p.stopped;
        let progress = if behind {
            let retry = Duration::from_millis(1);
            let waited = wal.changed.wait_timeout_while(progress, retry, idle);
            waited.unwrap_or_else(|p| p.into_inner()).0
        } else {
            let waited = wal.changed.wait_while(progress, idle);
            waited.unwrap_or_else(|p| p.into_inner())
        };
        if progress.stopped {
            return;
        }
        seen = progress.commits;
        drop(progress);
        match checkpoint(conn) {
            Some((log, checkpointed)) => {
                behind = checkpointed < log;
                wal.update(|p| {
                    p.checkpointed = checkpointed;
                    p.covered = seen;
                });
            }
            // Retried shortly; the writer's wait never counts a failed pass.
            None => behind = true,
        }
    }
}

/// A PASSIVE checkpoint; returns the WAL's length in frames and how many of
/// them are now in the database file. A failure only leaves the WAL longer
/// until the next pass.
fn checkpoint(conn: &Connection) -> Option<(c_int, c_int)> {
    let started = std::time::Instant::now();
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, c_int>(1)?, r.get::<_, c_int>(2)?))
    });
    metrics::histogram!("sqlite_checkpoint_seconds").record(started.elapsed().as_secs_f64());
    result
        .inspect_err(|e| tracing::warn!(error = %e, "WAL checkpoint failed"))
        .ok()
}

/// Runs one of the group's own statements, prepared once: parsing
/// `SAVEPOINT`/`RELEASE` for every write was a tenth of the writer's time.
fn step(tx: &Transaction<'_>, sql: &str) -> rusqlite::Result<()> {
    tx.prepare_cached(sql)?.execute([]).map(drop)
}

fn commit_group(conn: &mut Connection, group: Vec<Op>) -> (Vec<Reply>, Result<(), String>) {
    let mut replies = Vec::with_capacity(group.len());
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        // Nothing ran; dropping the writes answers their callers with an error.
        Err(e) => return (replies, Err(e.to_string())),
    };
    let mut broken = None;
    for op in group {
        if broken.is_some() {
            continue; // not run: dropping it answers its caller with an error
        }
        if let Err(e) = step(&tx, "SAVEPOINT op") {
            broken = Some(e.to_string());
            continue;
        }
        let (ok, reply) = op(&tx);
        let undo = if ok {
            step(&tx, "RELEASE op")
        } else {
            step(&tx, "ROLLBACK TO op").and_then(|()| step(&tx, "RELEASE op"))
        };
        if let Err(e) = undo {
            broken = Some(e.to_string());
        }
        replies.push(reply);
    }
    let committed = match broken {
        Some(why) => Err(why), // dropping `tx` rolls the whole group back
        None => tx.commit().map_err(|e| e.to_string()),
    };
    (replies, committed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> (Arc<Mutex<Connection>>, Connection) {
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER PRIMARY KEY, pad BLOB);",
        )
        .unwrap();
        (Arc::new(Mutex::new(conn)), Connection::open(&path).unwrap())
    }

    fn count(conn: &Mutex<Connection>, sql: &str) -> i64 {
        conn.lock()
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, checkpoints) = open(&dir);
        let writer =
            GroupWriter::start(conn.clone(), checkpoints, &dir.path().join("t.db")).unwrap();
        let mut writes = Vec::new();
        for v in 0..200i64 {
            let writer = writer.clone();
            writes.push(tokio::spawn(async move {
                writer
                    .write(move |tx| {
                        tx.execute("INSERT INTO t (v) VALUES (?1)", [v])?;
                        if v % 10 == 0 {
                            // Inserted, then refused: its savepoint must undo the row.
                            return Err(StoreError::UsernameTaken);
                        }
                        Ok(v)
                    })
                    .await
            }));
        }
        let mut ok = 0;
        for w in writes {
            match w.await.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::UsernameTaken) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 180);
        let rows = count(&conn, "SELECT count(*) FROM t WHERE v % 10 != 0");
        let refused = count(&conn, "SELECT count(*) FROM t WHERE v % 10 = 0");
        assert_eq!((rows, refused), (180, 0));
    }

    #[tokio::test]
    async fn a_write_whose_wal_cannot_be_synced_is_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, checkpoints) = open(&dir);
        let nowhere = dir.path().join("missing/t.db-wal");
        let writer = GroupWriter::start_with(conn, checkpoints, nowhere, REWIND_FRAMES).unwrap();
        let written = writer
            .write(|tx| Ok(tx.execute("INSERT INTO t (v) VALUES (1)", [])?))
            .await;
        match written {
            Err(StoreError::Backend(e)) => {
                assert!(e.to_string().contains("syncing the WAL"), "{e}")
            }
            other => panic!("acknowledged without a sync: {other:?}"),
        }
        // Fail-stop: even once the WAL could be synced again, nothing more is acknowledged.
        std::fs::create_dir_all(dir.path().join("missing")).unwrap();
        std::fs::write(dir.path().join("missing/t.db-wal"), b"").unwrap();
        let again = writer
            .write(|tx| Ok(tx.execute("INSERT INTO t (v) VALUES (2)", [])?))
            .await;
        assert!(
            again.is_err(),
            "acknowledged after a failed sync: {again:?}"
        );
        assert!(writer.broken().is_some());
    }

    #[tokio::test]
    async fn the_wal_starts_over_under_sustained_writes() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, checkpoints) = open(&dir);
        let wal = dir.path().join("t.db-wal");
        let writer = GroupWriter::start_with(conn.clone(), checkpoints, wal.clone(), 64).unwrap();
        for v in 0..2_000i64 {
            writer
                .write(move |tx| {
                    Ok(tx.execute("INSERT INTO t (v, pad) VALUES (?1, zeroblob(3000))", [v])?)
                })
                .await
                .unwrap();
        }
        assert_eq!(count(&conn, "SELECT count(*) FROM t"), 2_000);
        // Each write adds at least one 4 KiB frame: never rewound, the WAL would
        // hold 2,000 of them.
        let frames = std::fs::metadata(&wal).unwrap().len() / 4_120;
        assert!(frames < 256, "the WAL grew to {frames} frames");
    }
}
