//! The job queue on PostgreSQL: `FOR UPDATE SKIP LOCKED` hands each runnable
//! job to exactly one of any number of workers without blocking the others.
//!
//! Written here rather than taken from a job-queue crate (apalis, sqlxmq,
//! graphile_worker were considered): a job must be inserted in the same
//! transaction as its post, on SQLite as well as PostgreSQL, behind the same
//! trait, and its completion must update the post atomically; those crates
//! bring their own schemas, connections and job models, which would split that
//! transaction in two. The queue itself is a handful of statements.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::{append_event, store_rendering};
use crate::{Job, JobOutcome, JobQueue, StoreResult};
use domain::{PostFilter, PostId, Timestamp};

fn lease_end(now: Timestamp, lease: Duration) -> Timestamp {
    domain::later(now, lease)
}

#[async_trait]
impl JobQueue for PgStore {
    async fn claim_job(&self, lease: Duration, now: Timestamp) -> StoreResult<Option<Job>> {
        let token = uuid::Uuid::new_v4();
        let job = sqlx::query(
            "WITH claimed AS ( \
               UPDATE jobs SET attempts = attempts + 1, lease_token = $1, run_at = $2 \
               WHERE id = (SELECT id FROM jobs WHERE run_at <= $3 ORDER BY run_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
               RETURNING id, post_id, attempts) \
             SELECT c.id, c.post_id, c.attempts, p.original_key, p.original_format, p.filter, p.dither_levels \
             FROM claimed c JOIN posts p ON p.id = c.post_id",
        )
        .bind(token)
        .bind(lease_end(now, lease))
        .bind(now)
        .try_map(|r: PgRow| {
            Ok(Job {
                id: r.try_get("id")?,
                post_id: PostId::from_uuid(r.try_get("post_id")?),
                attempt: r.try_get::<i32, _>("attempts")? as u32,
                original_key: r.try_get("original_key")?,
                format: r.try_get("original_format")?,
                filter: PostFilter::from_stored(
                    &r.try_get::<String, _>("filter")?,
                    r.try_get::<Option<i16>, _>("dither_levels")?.map(i64::from),
                ),
                lease_token: token,
            })
        })
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        Ok(job)
    }

    async fn extend_lease(&self, job: &Job, lease: Duration, now: Timestamp) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE jobs SET run_at = $1 WHERE id = $2 AND lease_token = $3")
            .bind(lease_end(now, lease))
            .bind(job.id)
            .bind(job.lease_token)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(n.rows_affected() == 1)
    }

    async fn finish_job(
        &self,
        job: &Job,
        outcome: JobOutcome,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let n = sqlx::query("DELETE FROM jobs WHERE id = $1 AND lease_token = $2")
            .bind(job.id)
            .bind(job.lease_token)
            .execute(&mut *tx)
            .await?;
        if n.rows_affected() == 0 {
            return Ok(false);
        }
        let (author, kind, data): (Option<uuid::Uuid>, &str, serde_json::Value) = match outcome {
            JobOutcome::Ready(image) => {
                let author = sqlx::query_scalar(
                    "UPDATE posts SET status = 'ready', image_key = $1, image_width = $2, image_height = $3, \
                     blurhash = $4, failure_reason = NULL, updated_at = $5, version = version + 1 WHERE id = $6 \
                     RETURNING author_id",
                )
                .bind(image.key)
                .bind(image.width as i32)
                .bind(image.height as i32)
                .bind(image.blurhash)
                .bind(now)
                .bind(job.post_id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
                (
                    author,
                    "post.ready",
                    serde_json::json!({"post_id": job.post_id, "status": "ready"}),
                )
            }
            JobOutcome::Failed(reason) => {
                let author = sqlx::query_scalar(
                    "UPDATE posts SET status = 'failed', failure_reason = $1, updated_at = $2, version = version + 1 \
                     WHERE id = $3 RETURNING author_id",
                )
                .bind(&reason)
                .bind(now)
                .bind(job.post_id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
                let data = serde_json::json!({"post_id": job.post_id, "status": "failed", "failure_reason": reason});
                (author, "post.failed", data)
            }
        };
        let Some(author) = author else {
            return Ok(false);
        };
        store_rendering(&mut tx, job.post_id, self.render).await?;
        append_event(&mut tx, author, kind, &data).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn retry_job(&self, job: &Job, error: &str, retry_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET run_at = $1, lease_token = NULL, last_error = $2 WHERE id = $3 AND lease_token = $4",
        )
        .bind(retry_at)
        .bind(error)
        .bind(job.id)
        .bind(job.lease_token)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn queue_stats(&self, now: Timestamp) -> StoreResult<(u64, Option<Duration>)> {
        let (n, oldest): (i64, Option<Timestamp>) =
            sqlx::query_as("SELECT count(*), min(created_at) FROM jobs")
                .fetch_one(&mut *self.conn().await?)
                .await?;
        let age = oldest.map(|t| (now - t).to_std().unwrap_or_default());
        Ok((n as u64, age))
    }

    async fn wait_for_jobs(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.jobs_queued.notified()).await;
    }
}
