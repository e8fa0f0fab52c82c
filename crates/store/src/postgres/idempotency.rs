//! Idempotency keys on PostgreSQL.

use async_trait::async_trait;

use super::PgStore;
use crate::answers::stored_answer;
use crate::{IdempotencyStore, KeyClaim, NewClaim, StoreResult, StoredResponse};
use domain::Timestamp;
use domain::idempotency::StoredKey;

#[async_trait]
impl IdempotencyStore for PgStore {
    async fn claim_key(&self, claim: NewClaim) -> StoreResult<KeyClaim> {
        let (scope_key, fingerprint, now) = (&claim.scope_key, &claim.fingerprint, claim.at);
        let (expires_at, lease_until) = (claim.expires_at, claim.lease_until);
        // One statement claims atomically: a new key, or one that
        // `StoredKey::claimable` says may be taken over, becomes ours (the WHERE
        // is that rule); any other existing row is left alone.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (scope_key, fingerprint, state, created_at, expires_at, lease_until) \
             VALUES ($1, $2, 'in_flight', $3, $4, $5) \
             ON CONFLICT (scope_key) DO UPDATE SET fingerprint = excluded.fingerprint, state = 'in_flight', \
               status = NULL, headers = NULL, body = NULL, created_at = excluded.created_at, \
               expires_at = excluded.expires_at, lease_until = excluded.lease_until \
             WHERE idempotency_keys.expires_at <= $3 \
                OR (idempotency_keys.state = 'in_flight' AND idempotency_keys.lease_until <= $3)",
        )
        .bind(scope_key)
        .bind(fingerprint.as_slice())
        .bind(now)
        .bind(expires_at)
        .bind(lease_until)
        .execute(&mut *self.conn().await?)
        .await?;
        if claimed.rows_affected() == 1 {
            return Ok(KeyClaim::Claimed);
        }
        type Existing = (
            Vec<u8>,
            String,
            Option<i32>,
            Option<String>,
            Option<Vec<u8>>,
            Timestamp,
            Timestamp,
        );
        let existing: Option<Existing> = sqlx::query_as(
            "SELECT fingerprint, state, status, headers, body, lease_until, expires_at \
             FROM idempotency_keys WHERE scope_key = $1",
        )
        .bind(scope_key)
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        let Some((fingerprint_then, state, status, headers, body, lease_until, expires_at)) =
            existing
        else {
            // Released between the two statements: the caller may simply retry.
            return Ok(KeyClaim::InFlight);
        };
        let status = status.map(|s| s as u16);
        let key = StoredKey {
            fingerprint: fingerprint_then,
            answer: stored_answer((state, status, headers, body))?,
            lease_until,
            expires_at,
        };
        Ok(key.verdict(fingerprint))
    }

    async fn complete_key(&self, scope_key: &str, response: &StoredResponse) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        record_answer(&mut conn, scope_key, response).await?;
        Ok(())
    }

    async fn renew_key(&self, scope_key: &str, lease_until: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE idempotency_keys SET lease_until = $1 WHERE scope_key = $2 AND state = 'in_flight'",
        )
        .bind(lease_until)
        .bind(scope_key)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn release_key(&self, scope_key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE scope_key = $1 AND state = 'in_flight'")
            .bind(scope_key)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn purge_keys(&self, now: Timestamp) -> StoreResult<u64> {
        let n = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(n.rows_affected())
    }
}

/// Stores the answer to a claimed key on `conn` (the write's own transaction,
/// when the write records its answer itself).
pub(super) async fn record_answer(
    conn: &mut sqlx::PgConnection,
    scope_key: &str,
    response: &StoredResponse,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET state = 'done', status = $1, headers = $2, body = $3 WHERE scope_key = $4",
    )
    .bind(i32::from(response.status))
    .bind(crate::answers::headers_json(response))
    .bind(&response.body)
    .bind(scope_key)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
