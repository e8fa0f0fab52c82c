//! Requests of one kind that arrive together go to PostgreSQL as one
//! statement.
//!
//! On PostgreSQL most of what a small request costs is what every statement
//! costs, whatever it does: a round trip over the socket, a wake-up of the
//! database's process and of ours, the executor's start and, for a write,
//! the commit and its WAL flush (BENCHMARKS.md, "PostgreSQL at the speed of
//! its engine"). A `Batcher` queues requests while earlier ones are out and
//! hands whatever has queued to one function that answers them all with one
//! statement (comment creation: group commit; single posts and feed pages:
//! coalesced reads). A lone request is a batch of one, so it costs the same
//! statements as without batching; requests wait only while `at_once`
//! batches are already out.
//!
//! A batch runs in a task of its own: a client that vanishes does not cancel
//! a write that its batch has begun.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::pool::Pool;
use crate::{StoreError, StoreResult};

/// One request in a batch, and where its answer goes.
pub struct Waiting<I, O> {
    pub input: I,
    pub reply: oneshot::Sender<StoreResult<O>>,
}

impl<I, O> Waiting<I, O> {
    pub fn answer(self, answer: StoreResult<O>) {
        // The asker may have gone (its client vanished); the work is done.
        let _ = self.reply.send(answer);
    }
}

/// Answers every request of `batch` with `e`.
pub fn fail_all<I, O>(batch: Vec<Waiting<I, O>>, e: sqlx::Error) {
    super::pool::note_failure(&e);
    let message = e.to_string();
    for waiting in batch {
        waiting.answer(Err(StoreError::Backend(anyhow::anyhow!("{message}"))));
    }
}

pub struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<Waiting<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts `at_once` tasks that each take whatever has queued, up to
    /// `most` requests, and answer it with `answer(batch, pool)`; while all
    /// of them are busy the next batch grows. They end when the `Batcher`
    /// is dropped. `kind` names the batches in the `postgres_batch_size`
    /// histogram.
    pub fn start<F, Fut>(
        kind: &'static str,
        at_once: usize,
        most: usize,
        pool: Pool,
        answer: F,
    ) -> Self
    where
        F: Fn(Vec<Waiting<I, O>>, Pool) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        let answer = Arc::new(answer);
        // Long-lived tasks rather than a task per batch: a batch's future
        // holds a whole statement's state, and spawning one per batch
        // (boxing and moving it) cost more instructions than the batch saved
        // for a request alone (measured with callgrind: ~45k per spawn).
        for _ in 0..at_once {
            let (waiting, answer, pool) = (waiting.clone(), answer.clone(), pool.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    if waiting.lock().await.recv_many(&mut batch, most).await == 0 {
                        return;
                    }
                    metrics::histogram!("postgres_batch_size", "kind" => kind)
                        .record(batch.len() as f64);
                    answer(batch, pool.clone()).await;
                }
            });
        }
        Batcher { queue }
    }

    pub async fn submit(&self, input: I) -> StoreResult<O> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Waiting { input, reply })
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("the store is shutting down")))?;
        answer
            .await
            .map_err(|_| StoreError::Backend(anyhow::anyhow!("a batch was dropped unanswered")))?
    }
}
