//! Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field"): the
//! rules of the period and of abandoned claims. Records live in the database,
//! so retries are recognised whichever node they reach and after restarts.

use std::time::Duration;

use super::{ServiceResult, Services};
use domain::{later, now};
use store::{KeyClaim, NewClaim, StoredResponse};

/// How long a key is remembered after its first use.
pub const IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// An in-flight claim is a lease its request renews every `CLAIM_RENEW_EVERY`
/// while it runs (it runs to its end even if the client leaves); a claim not
/// renewed for this long belongs to a request whose node died, and a retry
/// takes it over.
pub const CLAIM_LEASE: Duration = Duration::from_secs(5);
pub const CLAIM_RENEW_EVERY: Duration = Duration::from_millis(1500);

impl Services {
    pub async fn claim_idempotency_key(
        &self,
        scope_key: &str,
        fingerprint: &[u8; 32],
    ) -> ServiceResult<KeyClaim> {
        let t = now();
        let claim = NewClaim {
            scope_key: scope_key.to_owned(),
            fingerprint: *fingerprint,
            at: t,
            expires_at: later(t, IDEMPOTENCY_RETENTION),
            lease_until: later(t, CLAIM_LEASE),
        };
        Ok(self.store.claim_key(claim).await?)
    }

    pub async fn complete_idempotency_key(
        &self,
        scope_key: &str,
        response: &StoredResponse,
    ) -> ServiceResult<()> {
        Ok(self.store.complete_key(scope_key, response).await?)
    }

    pub async fn renew_idempotency_key(&self, scope_key: &str) -> ServiceResult<()> {
        Ok(self
            .store
            .renew_key(scope_key, later(now(), CLAIM_LEASE))
            .await?)
    }

    pub async fn release_idempotency_key(&self, scope_key: &str) -> ServiceResult<()> {
        Ok(self.store.release_key(scope_key).await?)
    }
}
