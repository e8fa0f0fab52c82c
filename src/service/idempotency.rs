//! Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field"): the
//! rules of the period and of abandoned claims. Records live in the database,
//! so retries are recognised whichever node they reach and after restarts.

use std::time::Duration;

use super::{ServiceResult, Services};
use crate::domain::now;
use crate::store::{KeyClaim, StoredResponse};

/// How long a key is remembered after its first use.
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// A claim still "in flight" this long after it was made belongs to a request
/// whose node died; a retry may take it over.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(600);

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("small durations fit")
}

impl Services {
    pub async fn claim_idempotency_key(
        &self,
        scope_key: &str,
        fingerprint: &[u8; 32],
    ) -> ServiceResult<KeyClaim> {
        let t = now();
        Ok(self
            .store
            .claim_key(
                scope_key,
                fingerprint,
                t,
                t + span(IDEMPOTENCY_RETENTION),
                t - span(ABANDONED_AFTER),
            )
            .await?)
    }

    pub async fn complete_idempotency_key(
        &self,
        scope_key: &str,
        response: &StoredResponse,
    ) -> ServiceResult<()> {
        Ok(self.store.complete_key(scope_key, response).await?)
    }

    pub async fn release_idempotency_key(&self, scope_key: &str) -> ServiceResult<()> {
        Ok(self.store.release_key(scope_key).await?)
    }
}
