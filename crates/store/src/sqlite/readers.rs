//! Reads for the embedded database: a fixed set of threads, each owning one
//! read connection for its whole life, taking closures from one queue.
//!
//! Why not `spawn_blocking` with a connection pool: under load every read then
//! went through tokio's blocking-pool lock and the pool's own lock, and a
//! profile of deep feed pages showed threads spinning and yielding on both.
//! Here a read costs one queue hand-off each way and no lock of ours; a
//! connection's page cache also stays warm on its own thread.

use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::anyhow;
use crossbeam_channel::{Receiver, Sender, unbounded};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{StoreError, StoreResult};

type Job = Box<dyn FnOnce(&Connection) + Send>;

pub(super) struct Readers {
    jobs: Sender<Job>,
}

impl Readers {
    /// Starts `count` reader threads on connections made by `open`. The threads
    /// end when the last `Readers` handle is dropped.
    pub(super) fn start(
        count: u32,
        open: impl Fn() -> anyhow::Result<Connection>,
    ) -> anyhow::Result<Self> {
        let (jobs, queue) = unbounded::<Job>();
        for n in 0..count.max(1) {
            let conn = open()?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{n}"))
                .spawn(move || serve(&conn, &queue))?;
        }
        Ok(Readers { jobs })
    }

    /// Runs `f` on the next free reader; the caller's task waits without a thread.
    pub(super) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = catch_unwind(AssertUnwindSafe(|| f(conn)))
                .unwrap_or_else(|_| Err(anyhow!("a read panicked")));
            let _ = answer.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Backend(anyhow!("the SQLite readers have stopped")))?;
        answered
            .await
            .map_err(|_| StoreError::Backend(anyhow!("a SQLite reader dropped the read")))?
            .map_err(StoreError::from)
    }
}

fn serve(conn: &Connection, queue: &Receiver<Job>) {
    while let Ok(job) = queue.recv() {
        job(conn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> anyhow::Result<Connection> {
        Ok(Connection::open_in_memory()?)
    }

    #[tokio::test]
    async fn reads_run_and_a_panicking_read_fails_alone() {
        let readers = Readers::start(2, memory).unwrap();
        let one: i64 = readers
            .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(one, 1);
        let failed = readers.read::<(), _>(|_| panic!("boom")).await;
        assert!(failed.is_err());
        // Both threads still serve reads afterwards.
        for _ in 0..4 {
            let two: i64 = readers
                .read(|c| Ok(c.query_row("SELECT 2", [], |r| r.get(0))?))
                .await
                .unwrap();
            assert_eq!(two, 2);
        }
    }
}
