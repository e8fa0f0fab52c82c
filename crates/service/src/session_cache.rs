//! Bearer tokens this process has already checked, kept for a short while so
//! that a write does not wait for a database read before it starts.
//!
//! Exactness: a logout through this process forgets the token before it is
//! acknowledged, and a lookup that was in flight while any token was revoked
//! is not kept (it may have read the session just before it went), so on the
//! node a client logs out through, the token stops working at once. A logout
//! through *another* process is seen here once the entry is `ttl` old (default
//! 1 s, the same bound as the feed cache's): that is the documented bound for
//! multi-node deployments. Only live sessions are kept; an unknown token is
//! looked up every time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::Account;
use domain::UserId;

/// Tokens kept at most; past that, expired entries go, then everything.
const MAX_ENTRIES: usize = 100_000;

pub struct SessionCache {
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (Account, Instant)>>,
    /// Revocations so far: a lookup started before the latest one is not kept.
    revocations: AtomicU64,
}

/// When a lookup started, in revocations (see `SessionCache::keep`).
#[derive(Clone, Copy)]
pub struct LookupStarted(u64);

impl SessionCache {
    /// `ttl` zero keeps nothing.
    pub fn new(ttl: Duration) -> Self {
        SessionCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
            revocations: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Account, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The account of a token checked less than `ttl` ago.
    pub fn get(&self, token_hash: &[u8; 32]) -> Option<Account> {
        let entries = self.entries();
        let (user, at) = entries.get(token_hash)?;
        (at.elapsed() < self.ttl).then(|| user.clone())
    }

    /// Call before looking a token up in the database.
    pub fn lookup_started(&self) -> LookupStarted {
        LookupStarted(self.revocations.load(Ordering::Acquire))
    }

    /// Keeps what a lookup found, unless a token was revoked since it started.
    pub fn keep(&self, token_hash: [u8; 32], account: Account, started: LookupStarted) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        // Checked under the lock that `revoke` takes too, so no revocation slips between.
        if self.revocations.load(Ordering::Acquire) != started.0 {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (_, at)| at.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(token_hash, (account, Instant::now()));
    }

    /// Forgets a token; call before its session is deleted is acknowledged.
    pub fn revoke(&self, token_hash: &[u8; 32]) {
        let mut entries = self.entries();
        self.revocations.fetch_add(1, Ordering::AcqRel);
        entries.remove(token_hash);
    }

    /// Forgets every token of a user whose account changed (role, password,
    /// suspension), so this process looks them up afresh.
    pub fn revoke_user(&self, user: UserId) {
        let mut entries = self.entries();
        self.revocations.fetch_add(1, Ordering::AcqRel);
        entries.retain(|_, (account, _)| account.user.id != user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::{Role, User, UserId, Username, now};

    fn user() -> Account {
        Account {
            user: User {
                id: UserId::new(),
                username: Username::from_trusted("someone".into()),
                created_at: now(),
            },
            role: Role::User,
            blocks: Default::default(),
        }
    }

    #[test]
    fn a_checked_token_is_kept_for_its_ttl() {
        let cache = SessionCache::new(Duration::from_millis(50));
        let started = cache.lookup_started();
        cache.keep([1; 32], user(), started);
        assert!(cache.get(&[1; 32]).is_some());
        assert!(cache.get(&[2; 32]).is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            cache.get(&[1; 32]).is_none(),
            "expired entries are not served"
        );
    }

    #[test]
    fn a_revoked_token_is_forgotten() {
        let cache = SessionCache::new(Duration::from_secs(60));
        cache.keep([1; 32], user(), cache.lookup_started());
        cache.revoke(&[1; 32]);
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn a_lookup_that_overlapped_a_revocation_is_not_kept() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let started = cache.lookup_started();
        cache.revoke(&[1; 32]);
        cache.keep([1; 32], user(), started);
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn a_users_tokens_are_forgotten_together() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let (alice, bob) = (user(), user());
        cache.keep([1; 32], alice.clone(), cache.lookup_started());
        cache.keep([2; 32], alice.clone(), cache.lookup_started());
        cache.keep([3; 32], bob, cache.lookup_started());
        cache.revoke_user(alice.user.id);
        assert!(cache.get(&[1; 32]).is_none() && cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[3; 32]).is_some());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let cache = SessionCache::new(Duration::ZERO);
        cache.keep([1; 32], user(), cache.lookup_started());
        assert!(cache.get(&[1; 32]).is_none());
    }
}
