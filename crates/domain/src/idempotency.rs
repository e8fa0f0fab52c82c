//! Idempotency-Key answers: what a creating request answered, kept so a
//! retry with the same key gets the same answer (PRODUCT.md §2), and the rule
//! that decides what a request with a known key gets.

use crate::Timestamp;

/// The answer to an Idempotency-Key claim, recorded in the transaction of the
/// write it answers (PRODUCT.md §2): no crash can leave the write done and the
/// claim open, so a retry after any failure either replays this answer or
/// finds no write and runs. The caller renders the answer from what was
/// written; the store only saves it.
pub struct KeyAnswer<T> {
    pub scope_key: String,
    pub render: Box<dyn FnOnce(&T) -> StoredResponse + Send>,
}

impl<T> KeyAnswer<T> {
    pub fn new(
        scope_key: String,
        render: impl FnOnce(&T) -> StoredResponse + Send + 'static,
    ) -> Self {
        KeyAnswer {
            scope_key,
            render: Box::new(render),
        }
    }
}

/// A response kept for replaying to retries with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is ours: do the work, then complete or release it.
    Claimed,
    /// The first request with this key is still running.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
    Replay(StoredResponse),
}

/// A request's claim on a key, made at `at`.
#[derive(Debug, Clone)]
pub struct NewClaim {
    pub scope_key: String,
    pub fingerprint: [u8; 32],
    pub at: Timestamp,
    /// How long the key (and later its answer) is kept.
    pub expires_at: Timestamp,
    /// Until when the request is presumed alive (renewed while it runs).
    pub lease_until: Timestamp,
}

/// A key as stored: the request that claimed it, and its answer once given.
pub struct StoredKey {
    pub fingerprint: Vec<u8>,
    /// `None` while the first request is still running.
    pub answer: Option<StoredResponse>,
    /// Until when the running request is presumed alive (renewed while it runs).
    pub lease_until: Timestamp,
    pub expires_at: Timestamp,
}

impl StoredKey {
    /// Whether a new request may take the key over: it expired, or its request
    /// died in flight (its lease lapsed). PostgreSQL claims in one statement,
    /// so its `ON CONFLICT … WHERE` states this same rule in SQL.
    pub fn claimable(&self, now: Timestamp) -> bool {
        self.expires_at <= now || (self.answer.is_none() && self.lease_until <= now)
    }

    /// What a request with `fingerprint` gets for a key it could not claim.
    pub fn verdict(self, fingerprint: &[u8; 32]) -> KeyClaim {
        if self.fingerprint != fingerprint {
            return KeyClaim::Mismatch;
        }
        match self.answer {
            None => KeyClaim::InFlight,
            Some(answer) => KeyClaim::Replay(answer),
        }
    }
}

/// The scope of a signed-in user's Idempotency-Keys: a key is stored as
/// "<scope> <key>", so all of one user's keys are one range of scope keys.
pub fn user_scope(user: crate::UserId) -> String {
    format!("user:{user}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(answer: Option<StoredResponse>, lease_ms: i64, expires_ms: i64) -> StoredKey {
        StoredKey {
            fingerprint: vec![1; 32],
            answer,
            lease_until: crate::from_millis(lease_ms),
            expires_at: crate::from_millis(expires_ms),
        }
    }

    fn answer() -> StoredResponse {
        StoredResponse {
            status: 201,
            headers: vec![],
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_key_is_taken_over_once_expired_or_abandoned_in_flight() {
        let now = crate::from_millis(1_000);
        assert!(
            !key(None, 2_000, 9_000).claimable(now),
            "in flight, lease running"
        );
        assert!(
            key(None, 1_000, 9_000).claimable(now),
            "in flight, lease lapsed"
        );
        assert!(
            !key(Some(answer()), 0, 9_000).claimable(now),
            "answered, kept"
        );
        assert!(
            key(Some(answer()), 0, 1_000).claimable(now),
            "answered, expired"
        );
    }

    #[test]
    fn a_retry_gets_the_answer_a_different_request_a_mismatch() {
        let same = [1; 32];
        assert_eq!(key(None, 0, 0).verdict(&same), KeyClaim::InFlight);
        assert_eq!(
            key(Some(answer()), 0, 0).verdict(&same),
            KeyClaim::Replay(answer())
        );
        assert_eq!(
            key(Some(answer()), 0, 0).verdict(&[2; 32]),
            KeyClaim::Mismatch
        );
    }
}
