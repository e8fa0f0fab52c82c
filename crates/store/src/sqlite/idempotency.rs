//! Idempotency keys on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::ms;
use crate::answers::stored_answer;
use crate::{IdempotencyStore, KeyClaim, NewClaim, StoreResult, StoredResponse};
use domain::idempotency::StoredKey;
use domain::{Timestamp, from_millis};

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_key(&self, claim: NewClaim) -> StoreResult<KeyClaim> {
        let (scope_key, fingerprint, now) = (claim.scope_key, claim.fingerprint, claim.at);
        let (expires_at, lease_until) = (claim.expires_at, claim.lease_until);
        // One writer transaction: the check and the claim cannot interleave with another claim.
        self.write(move |tx| {
            let existing = tx
                .query_row(
                    "SELECT fingerprint, state, status, headers, body, lease_until, expires_at \
                     FROM idempotency_keys WHERE scope_key = ?1",
                    [&scope_key],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            (r.get::<_, String>(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                            from_millis(r.get(5)?),
                            from_millis(r.get(6)?),
                        ))
                    },
                )
                .optional()?;
            if let Some((fingerprint_then, answer, lease_until, expires_at)) = existing {
                let key = StoredKey {
                    fingerprint: fingerprint_then,
                    answer: stored_answer(answer)?,
                    lease_until,
                    expires_at,
                };
                if !key.claimable(now) {
                    return Ok(key.verdict(&fingerprint));
                }
            }
            tx.execute(
                "INSERT OR REPLACE INTO idempotency_keys (scope_key, fingerprint, state, created_at, expires_at, lease_until) \
                 VALUES (?1, ?2, 'in_flight', ?3, ?4, ?5)",
                params![scope_key, fingerprint.as_slice(), ms(now), ms(expires_at), ms(lease_until)],
            )?;
            Ok(KeyClaim::Claimed)
        })
        .await
    }

    async fn complete_key(&self, scope_key: &str, response: &StoredResponse) -> StoreResult<()> {
        let (scope_key, response) = (scope_key.to_owned(), response.clone());
        self.write(move |tx| Ok(record_answer(tx, &scope_key, &response)?))
            .await
    }

    async fn renew_key(&self, scope_key: &str, lease_until: Timestamp) -> StoreResult<()> {
        let scope_key = scope_key.to_owned();
        self.write(move |tx| {
            tx.execute(
                "UPDATE idempotency_keys SET lease_until = ?1 WHERE scope_key = ?2 AND state = 'in_flight'",
                params![ms(lease_until), scope_key],
            )?;
            Ok(())
        })
        .await
    }

    async fn release_key(&self, scope_key: &str) -> StoreResult<()> {
        let scope_key = scope_key.to_owned();
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM idempotency_keys WHERE scope_key = ?1 AND state = 'in_flight'",
                [scope_key],
            )?;
            Ok(())
        })
        .await
    }

    async fn purge_keys(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            Ok(tx.execute(
                "DELETE FROM idempotency_keys WHERE expires_at <= ?1",
                [ms(now)],
            )? as u64)
        })
        .await
    }
}

/// Stores the answer to a claimed key, in whatever transaction `tx` is (the
/// write's own, when the write records its answer itself).
pub(super) fn record_answer(
    tx: &rusqlite::Connection,
    scope_key: &str,
    response: &StoredResponse,
) -> rusqlite::Result<()> {
    let headers = crate::answers::headers_json(response);
    tx.prepare_cached(
        "UPDATE idempotency_keys SET state = 'done', status = ?1, headers = ?2, body = ?3 WHERE scope_key = ?4",
    )?
    .execute(params![response.status, headers, response.body, scope_key])?;
    Ok(())
}
