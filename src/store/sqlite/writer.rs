//! Group commit for the embedded database. Every write is a closure sent to
//! one writer thread, which takes whatever writes are waiting, runs each in its
//! own SAVEPOINT inside one IMMEDIATE transaction, and commits once: one fsync
//! (synchronous=FULL) makes the whole group durable, and only then is each
//! caller answered. Batching is by what is already waiting, never by delay: a
//! lone write commits at once. A write that fails rolls back to its savepoint
//! and fails alone; a failed commit fails the whole group.
//! Written here because no SQLite crate offers group commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use crate::store::{StoreError, StoreResult};

/// Most writes folded into one transaction, so a long queue still commits often.
const MAX_GROUP: usize = 256;

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
    }
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
