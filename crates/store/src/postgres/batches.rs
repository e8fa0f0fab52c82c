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

use tokio::sync::{Semaphore, mpsc, oneshot};

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
    /// Starts the task that forms batches of at most `most` requests, with
    /// at most `at_once` being answered at a time; it ends when the
    /// `Batcher` is dropped. `answer` gets each batch and the pool its
    /// statement takes a connection from. `kind` names the batches in the
    /// `postgres_batch_size` histogram.
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
        let (queue, mut waiting) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let turns = Arc::new(Semaphore::new(at_once));
            loop {
                // The turn first: while every turn is out, the next batch grows.
                let Ok(turn) = turns.clone().acquire_owned().await else {
                    return;
                };
                let mut batch = Vec::new();
                if waiting.recv_many(&mut batch, most).await == 0 {
                    return;
                }
                metrics::histogram!("postgres_batch_size", "kind" => kind)
                    .record(batch.len() as f64);
                let answering = answer(batch, pool.clone());
                tokio::spawn(async move {
                    answering.await;
                    drop(turn);
                });
            }
        });
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
