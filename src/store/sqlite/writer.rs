//! Group commit for the embedded database. Every write is a closure sent to
//! one writer thread, which takes whatever writes are waiting, runs each in its
//! own SAVEPOINT inside one IMMEDIATE transaction, and commits once: one fsync
//! (synchronous=FULL) makes the whole group durable, and only then is each
//! caller answered. Batching is by what is already waiting, never by delay: a
//! lone write commits at once. A write that fails rolls back to its savepoint
//! and fails alone; a failed commit fails the whole group.
//!
//! Checkpoints (copying the WAL back into the database file) are run by this
//! thread too, but only after the group's callers have been answered: SQLite's
//! automatic checkpoint runs inside COMMIT, which made every thousandth-page
//! group wait for a database-file fsync before anyone heard back. (A separate
//! checkpointing thread was measured and dropped: its database-file fsyncs
//! delayed the groups' WAL fsyncs on the same disk, p99 32 ms -> 81 ms.)
//! Written here because no SQLite crate offers group commit.

use std::cell::Cell;
use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// Most writes folded into one transaction, so a long queue still commits often.
const MAX_GROUP: usize = 256;

/// WAL frames written since the last checkpoint before this thread runs one
/// (SQLite's own default threshold, moved out of COMMIT).
const CHECKPOINT_FRAMES: c_int = 1000;

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
/// A write: runs inside the group's transaction; says whether it succeeded.
type Op = Box<dyn FnOnce(&Transaction<'_>) -> (bool, Reply) + Send>;

#[derive(Clone)]
pub(super) struct GroupWriter {
    ops: Sender<Op>,
}

impl GroupWriter {
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> std::io::Result<Self> {
        // Replaces SQLite's automatic checkpoint (which is itself a WAL hook).
        conn.lock()
            .unwrap_or_else(|p| p.into_inner())
            .wal_hook(Some(record_wal_frames));
        let (ops, queue) = channel::<Op>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(&conn, &queue))?;
        Ok(GroupWriter { ops })
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

fn run(conn: &Mutex<Connection>, queue: &Receiver<Op>) {
    // WAL frames after the last checkpoint: a rewound WAL reports fewer.
    let mut checkpointed_at = 0;
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
        let (replies, committed) = commit_group(&mut conn, group);
        metrics::histogram!("sqlite_group_commit_size").record(replies.len() as f64);
        for reply in replies {
            reply(committed.clone());
        }
        let frames = WAL_FRAMES.get();
        if frames < checkpointed_at {
            checkpointed_at = 0; // the WAL started over after the last checkpoint
        }
        if frames - checkpointed_at >= CHECKPOINT_FRAMES {
            checkpoint(&conn);
            checkpointed_at = frames;
        }
    }
}

/// A PASSIVE checkpoint (waits for no one). A failure only leaves the WAL
/// longer until the next attempt.
fn checkpoint(conn: &Connection) {
    let started = std::time::Instant::now();
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "WAL checkpoint failed");
    }
    metrics::histogram!("sqlite_checkpoint_seconds").record(started.elapsed().as_secs_f64());
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
        if let Err(e) = tx.execute_batch("SAVEPOINT op") {
            broken = Some(e.to_string());
            continue;
        }
        let (ok, reply) = op(&tx);
        let undo = if ok {
            tx.execute_batch("RELEASE op")
        } else {
            tx.execute_batch("ROLLBACK TO op; RELEASE op")
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

    #[tokio::test]
    async fn concurrent_writes_share_commits_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v INTEGER PRIMARY KEY);")
            .unwrap();
        let conn = Arc::new(Mutex::new(conn));
        let writer = GroupWriter::start(conn.clone()).unwrap();
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
        let rows: i64 = conn
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM t WHERE v % 10 != 0", [], |r| r.get(0))
            .unwrap();
        let refused: i64 = conn
            .lock()
            .unwrap()
            .query_row("SELECT count(*) FROM t WHERE v % 10 = 0", [], |r| r.get(0))
            .unwrap();
        assert_eq!((rows, refused), (180, 0));
    }
}
