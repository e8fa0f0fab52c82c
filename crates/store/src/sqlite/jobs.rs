//! The image job queue on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::{append_event, ms, store_rendering, uuid_col};
use crate::{Job, JobOutcome, JobQueue, StoreResult};
use domain::{PostFilter, PostId, Timestamp};

fn lease_end(now: Timestamp, lease: Duration) -> i64 {
    ms(domain::later(now, lease))
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn claim_job(&self, lease: Duration, now: Timestamp) -> StoreResult<Option<Job>> {
        self.write(move |tx| {
            let token = uuid::Uuid::new_v4();
            // A claimed job's run_at is its lease expiry: if the worker dies, the
            // job becomes runnable again by itself once the lease runs out.
            let claimed = tx
                .prepare_cached(
                    "UPDATE jobs SET attempts = attempts + 1, lease_token = ?1, run_at = ?2 \
                     WHERE id = (SELECT id FROM jobs WHERE run_at <= ?3 ORDER BY run_at LIMIT 1) \
                     RETURNING id, post_id, attempts",
                )?
                .query_row(
                    params![token.as_bytes(), lease_end(now, lease), ms(now)],
                    |r| {
                        Ok((
                            uuid_col(r, 0, |b| uuid::Uuid::from_slice(b).ok())?,
                            uuid_col(r, 1, PostId::from_slice)?,
                            r.get::<_, u32>(2)?,
                        ))
                    },
                )
                .optional()?;
            let Some((id, post_id, attempt)) = claimed else {
                return Ok(None);
            };
            let (original_key, filter, levels, format): (String, String, Option<i64>, String) = tx
                .prepare_cached("SELECT original_key, filter, dither_levels, original_format FROM posts WHERE id = ?1")?
                .query_row([post_id.as_bytes()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
            Ok(Some(Job {
                id,
                post_id,
                original_key,
                format,
                filter: PostFilter::from_stored(&filter, levels),
                attempt,
                lease_token: token,
            }))
        })
        .await
    }

    async fn extend_lease(&self, job: &Job, lease: Duration, now: Timestamp) -> StoreResult<bool> {
        let (id, token) = (job.id, job.lease_token);
        self.write(move |tx| {
            let n = tx.execute(
                "UPDATE jobs SET run_at = ?1 WHERE id = ?2 AND lease_token = ?3",
                params![lease_end(now, lease), id.as_bytes(), token.as_bytes()],
            )?;
            Ok(n == 1)
        })
        .await
    }

    async fn finish_job(
        &self,
        job: &Job,
        outcome: JobOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let (id, token, post_id) = (job.id, job.lease_token, job.post_id);
        let render = self.render;
        let applied = self
            .write(move |tx| {
                let n = tx.execute(
                    "DELETE FROM jobs WHERE id = ?1 AND lease_token = ?2",
                    params![id.as_bytes(), token.as_bytes()],
                )?;
                if n == 0 {
                    return Ok(None);
                }
                let author: Option<Vec<u8>> = tx
                    .query_row("SELECT author_id FROM posts WHERE id = ?1", [post_id.as_bytes()], |r| r.get(0))
                    .optional()?;
                let Some(author) = author else {
                    return Ok(None);
                };
                let (kind, data) = match outcome {
                    JobOutcome::Ready(image) => {
                        tx.execute(
                            "UPDATE posts SET status = 'ready', image_key = ?1, image_width = ?2, image_height = ?3, \
                             blurhash = ?4, failure_reason = NULL, updated_at = ?5, version = version + 1 WHERE id = ?6",
                            params![image.key, image.width, image.height, image.blurhash, ms(now), post_id.as_bytes()],
                        )?;
                        ("post.ready", serde_json::json!({"post_id": post_id, "status": "ready"}))
                    }
                    JobOutcome::Failed(reason) => {
                        tx.execute(
                            "UPDATE posts SET status = 'failed', failure_reason = ?1, updated_at = ?2, \
                             version = version + 1 WHERE id = ?3",
                            params![reason, ms(now), post_id.as_bytes()],
                        )?;
                        let data = serde_json::json!({"post_id": post_id, "status": "failed", "failure_reason": reason});
                        ("post.failed", data)
                    }
                };
                store_rendering(tx, post_id, render)?;
                append_event(tx, &author, kind, &data)?;
                Ok(domain::UserId::from_slice(&author))
            })
            .await?;
        if let Some(author) = applied {
            self.event_wakers.wake(author);
        }
        Ok(applied.is_some())
    }

    async fn retry_job(&self, job: &Job, error: &str, retry_at: Timestamp) -> StoreResult<()> {
        let (id, token, error) = (job.id, job.lease_token, error.to_owned());
        self.write(move |tx| {
            tx.execute(
                "UPDATE jobs SET run_at = ?1, lease_token = NULL, last_error = ?2 WHERE id = ?3 AND lease_token = ?4",
                params![ms(retry_at), error, id.as_bytes(), token.as_bytes()],
            )?;
            Ok(())
        })
        .await
    }

    async fn queue_stats(&self, now: Timestamp) -> StoreResult<(u64, Option<Duration>)> {
        self.read(move |conn| {
            let (n, oldest): (i64, Option<i64>) =
                conn.query_row("SELECT count(*), min(created_at) FROM jobs", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let age = oldest.map(|t| Duration::from_millis((ms(now) - t).max(0) as u64));
            Ok((n as u64, age))
        })
        .await
    }

    async fn wait_for_jobs(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.jobs_queued.notified()).await;
    }
}
