//! The notification log on PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use crate::{Event, EventStore, StoreResult};
use domain::{Timestamp, UserId};

#[async_trait]
impl EventStore for PgStore {
    async fn events_after(&self, user: UserId, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        Ok(sqlx::query(
            "SELECT seq, kind, data, created_at FROM events WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(user.as_uuid())
        .bind(after)
        .bind(i64::from(limit))
        .try_map(|r: PgRow| {
            Ok(Event {
                seq: r.try_get("seq")?,
                kind: r.try_get("kind")?,
                data: r.try_get("data")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .fetch_all(&mut *self.conn().await?)
        .await?)
    }

    async fn last_event_seq(&self, user: UserId) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT event_seq FROM users WHERE id = $1")
                .bind(user.as_uuid())
                .fetch_one(&mut *self.conn().await?)
                .await?,
        )
    }

    async fn wait_for_events(&self, user: UserId, timeout: Duration) {
        self.event_wakers.wait(user, timeout).await;
    }

    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64> {
        let n = sqlx::query("DELETE FROM events WHERE created_at < $1")
            .bind(before)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(n.rows_affected())
    }
}
