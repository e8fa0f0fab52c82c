//! The notification log on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::params;

use super::SqliteStore;
use super::rows::ms;
use crate::{Event, EventStore, StoreResult, event_key};
use domain::{Timestamp, UserId, from_millis};

#[async_trait]
impl EventStore for SqliteStore {
    async fn events_after(&self, user: UserId, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        // A user's events are the key range "<user>:<after>" .. "<user>:<max>":
        // the key's index is the only one ordered by user and seq.
        let (from, to) = (
            event_key(user.as_uuid(), after),
            event_key(user.as_uuid(), i64::MAX),
        );
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT seq, kind, data, created_at FROM events WHERE key > ?1 AND key <= ?2 ORDER BY key LIMIT ?3",
                )?
                .query_map(params![from, to, limit], |r| {
                    Ok(Event {
                        seq: r.get(0)?,
                        kind: r.get(1)?,
                        data: r.get(2)?,
                        created_at: from_millis(r.get(3)?),
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn last_event_seq(&self, user: UserId) -> StoreResult<i64> {
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT event_seq FROM users WHERE id = ?1",
                [user.as_bytes()],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn wait_for_events(&self, user: UserId, timeout: Duration) {
        self.event_wakers.wait(user, timeout).await;
    }

    async fn purge_events(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM events WHERE created_at < ?1", [ms(before)])? as u64)
        })
        .await
    }
}
