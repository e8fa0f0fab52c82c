//! Rate limits shared by every node: GCRA in one SQL statement.

use std::time::Duration;

use async_trait::async_trait;

use super::PgStore;
use crate::StoreResult;
use crate::rate_limits::{Budget, Decision, RateLimits};

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[async_trait]
impl RateLimits for PgStore {
    /// GCRA: each request moves the bucket's theoretical arrival time (TAT) one
    /// interval later; a request is allowed while the TAT stays within one
    /// window of now. The check and the move are one atomic statement.
    async fn take(&self, bucket: &str, budget: Budget) -> StoreResult<Decision> {
        let (now, t, w) = (
            now_micros(),
            micros(budget.interval()),
            micros(budget.window),
        );
        let tat: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rate_limits AS r (bucket, tat) VALUES ($1, $2 + $3) \
             ON CONFLICT (bucket) DO UPDATE SET tat = GREATEST(r.tat, $2) + $3 \
             WHERE GREATEST(r.tat, $2) + $3 - $2 <= $4 \
             RETURNING tat",
        )
        .bind(bucket)
        .bind(now)
        .bind(t)
        .bind(w)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        if let Some(tat) = tat {
            let ahead = (tat - now).max(0);
            let remaining = ((w - ahead).max(0) / t.max(1)) as u32;
            return Ok(Decision::Allowed {
                remaining,
                reset: Duration::from_micros(ahead as u64),
            });
        }
        let tat: i64 = sqlx::query_scalar("SELECT tat FROM rate_limits WHERE bucket = $1")
            .bind(bucket)
            .fetch_one(&mut *self.conn().await?)
            .await?;
        let retry = (tat + t - w - now).max(0);
        Ok(Decision::Limited {
            retry_after: Duration::from_micros(retry as u64),
        })
    }

    async fn forget_idle(&self) -> StoreResult<()> {
        sqlx::query("DELETE FROM rate_limits WHERE tat < $1")
            .bind(now_micros())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }
}
