//! Registration, sessions and bearer-token authentication.

use std::sync::LazyLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::{ServiceError, ServiceResult, Services};
use domain::{Password, Role, Timestamp, User, UserId, Username, ValidationErrors, now};
use store::{KeyAnswer, SessionRecord};

/// A bearer token: 256 random bits, given to the client once and stored only as a SHA-256 hash.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        Token(URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn from_header(s: &str) -> Self {
        Token(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fast hash is enough: the token has 256 bits of entropy, so it cannot be guessed from it.
    fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

/// An authenticated caller: the user, what their role lets them do, and
/// their blocks both ways.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub role: Role,
    pub blocks: super::Blocks,
}

/// One of the caller's sessions as `GET /v1/me/sessions` lists it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: Timestamp,
    /// To the hour: use is written down hourly (`TOUCH_EVERY`).
    pub last_used_at: Timestamp,
    pub current: bool,
}

/// Sessions listed at most, most recently used first. Sessions expire after
/// 30 days unused, so only a script logging in without logging out gets near
/// it; a password change revokes every session, listed or not.
pub const SESSIONS_LISTED: u32 = 100;

/// A session's public id: derived from its token hash (itself a hash of the
/// token) under a label of its own, so it names the session without a column
/// of its own and cannot be turned back into the token or its stored hash.
fn session_id(token_hash: &[u8; 32]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"imagegram session id\0");
    hasher.update(token_hash);
    URL_SAFE_NO_PAD.encode(&hasher.finalize()[..16])
}

/// A signed-in user and the token that proves it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token: Token,
}

fn argon2() -> Argon2<'static> {
    // OWASP's first Argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Argon2 is meant to be expensive (19 MiB and tens of milliseconds a hash), so
/// it is bounded: it runs on threads of its own, one per core, with a short
/// queue (8 per core) behind them. Past the queue a sign-up or login gets 503 +
/// Retry-After at once, instead of piling work onto the blocking pool that file
/// I/O also needs — where each of up to hundreds of threads would also keep its
/// own 19 MiB allocation once it had hashed.
struct HashingPool {
    threads: rayon::ThreadPool,
    admitted: tokio::sync::Semaphore,
}

static HASHING: LazyLock<HashingPool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    HashingPool {
        threads: rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|n| format!("password-hash-{n}"))
            .build()
            .expect("starting the password hashing threads"),
        admitted: tokio::sync::Semaphore::new(cores * 8),
    }
});

/// Runs one password hash or verification within the bound.
async fn bounded_hashing<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> ServiceResult<T> {
    let Ok(_admitted) = HASHING.admitted.try_acquire() else {
        metrics::counter!("password_hashing_refused_total").increment(1);
        return Err(ServiceError::Overloaded(
            "too many sign-ins at once; retry in a second",
        ));
    };
    let (done, result) = tokio::sync::oneshot::channel();
    HASHING.threads.spawn(move || {
        let _ = done.send(work());
    });
    result
        .await
        .map_err(|e| ServiceError::Internal(e.into()))?
        .map_err(ServiceError::Internal)
}

async fn hash_password(password: Password) -> ServiceResult<String> {
    bounded_hashing(move || {
        argon2()
            .hash_password(password.expose().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
    })
    .await
}

/// A hash of no one's password, verified when the user does not exist so that
/// a login takes as long whether or not the username is known.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    argon2()
        .hash_password(b"not anyone's password")
        .expect("hashing a constant")
        .to_string()
});

async fn verify_password(password: String, hash: Option<String>) -> ServiceResult<bool> {
    bounded_hashing(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed =
            PasswordHash::new(&hash).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
        let ok = argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(known && ok)
    })
    .await
}

/// Comments the purge removes at once (see `purge_deleted_accounts`).
const PURGE_CONCURRENCY: usize = 8;

/// How often a session's use is written down: expiry is measured in days, so
/// an hour's precision costs nothing and keeps authentication a read.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug, PartialEq, Eq)]
enum SessionUse {
    Expired,
    /// Valid; record this use.
    Touch,
    /// Valid; its use was recorded recently.
    Recent,
}

/// Sessions expire after `ttl` unused (PRODUCT.md §3 Accounts).
fn session_use(last_used: Timestamp, at: Timestamp, ttl: std::time::Duration) -> SessionUse {
    if domain::later(last_used, ttl) <= at {
        SessionUse::Expired
    } else if last_used + TOUCH_EVERY <= at {
        SessionUse::Touch
    } else {
        SessionUse::Recent
    }
}

impl Services {
    /// With `answer`, the sign-up's Idempotency-Key answer is recorded with the
    /// account (its token is issued afresh to a retry, as tokens are not kept).
    pub async fn register(
        &self,
        username: &str,
        password: String,
        answer: Option<KeyAnswer<User>>,
    ) -> ServiceResult<Session> {
        let mut errors = ValidationErrors::default();
        let username = errors.check("username", Username::parse(username));
        let password = errors.check("password", Password::parse(password));
        errors.into_result()?;
        let (username, password) = (username.expect("checked"), password.expect("checked"));
        if self.store.user_by_username(&username).await?.is_some() {
            return Err(ServiceError::Conflict("that username is taken".into()));
        }
        let user = User {
            id: UserId::new(),
            username,
            created_at: now(),
        };
        let hash = hash_password(password).await?;
        self.store.create_user(&user, &hash, answer).await?;
        self.start_session(user, None).await
    }

    pub async fn login(
        &self,
        username: &str,
        password: String,
        answer: Option<KeyAnswer<User>>,
    ) -> ServiceResult<Session> {
        const WRONG: &str = "wrong username or password";
        // An invalid username cannot exist; still spend the hashing time.
        let credentials = match Username::parse(username) {
            Ok(name) => self.store.credentials(&name).await?,
            Err(_) => None,
        };
        let (user, hash, suspended) = match credentials {
            Some(c) => (Some(c.user), Some(c.password_hash), c.suspended),
            None => (None, None, false),
        };
        if !verify_password(password, hash).await? {
            return Err(ServiceError::Unauthorized(WRONG));
        }
        // Only after the password: the refusal tells that the account exists.
        if suspended {
            return Err(ServiceError::Suspended);
        }
        self.start_session(user.expect("verified users exist"), answer)
            .await
    }

    /// A new session for a user whose earlier session response is being replayed.
    pub async fn reissue_session(&self, user: User) -> ServiceResult<Session> {
        self.start_session(user, None).await
    }

    async fn start_session(
        &self,
        user: User,
        answer: Option<KeyAnswer<User>>,
    ) -> ServiceResult<Session> {
        let token = Token::generate();
        self.store
            .create_session(&token.hash(), &user, now(), answer)
            .await?;
        Ok(Session { user, token })
    }

    pub async fn logout(&self, token: &Token) -> ServiceResult<()> {
        let hash = token.hash();
        self.store.delete_session(&hash).await?;
        // After the deletion and before the answer; lookups in flight that read
        // the session before it went are not kept either (see `SessionCache`).
        self.sessions.revoke(&hash);
        Ok(())
    }

    /// The account a bearer token belongs to, if it is a live session.
    pub async fn authenticate(&self, token: &Token) -> ServiceResult<Option<Account>> {
        if token.as_str().is_empty() || token.as_str().len() > 256 {
            return Ok(None);
        }
        let hash = token.hash();
        if let Some(account) = self.sessions.get(&hash) {
            return Ok(Some(account));
        }
        let started = self.sessions.lookup_started();
        let Some(found) = self.store.user_by_session(&hash).await? else {
            return Ok(None);
        };
        let t = now();
        match session_use(found.last_used_at, t, self.settings.session_ttl) {
            SessionUse::Expired => {
                self.store.delete_session(&hash).await?;
                return Ok(None);
            }
            SessionUse::Touch => self.store.touch_session(&hash, t).await?,
            SessionUse::Recent => {}
        }
        let lists = self.store.block_lists(found.user.id).await?;
        let account = Account {
            user: found.user,
            role: found.role,
            blocks: super::Blocks {
                hidden: std::sync::Arc::new(super::HiddenAuthors::new(lists.blocked)),
                blocked_by: lists.blocked_by.into(),
            },
        };
        self.sessions.keep(hash, account.clone(), started);
        Ok(Some(account))
    }

    /// The caller's live sessions, most recently used first.
    pub async fn sessions_of(
        &self,
        user: &User,
        current: &Token,
    ) -> ServiceResult<Vec<SessionInfo>> {
        let current = current.hash();
        let cutoff = domain::earlier(now(), self.settings.session_ttl);
        Ok(self
            .store
            .sessions_of(user.id, SESSIONS_LISTED)
            .await?
            .into_iter()
            .filter(|s| s.last_used_at > cutoff)
            .map(|s: SessionRecord| SessionInfo {
                id: session_id(&s.token_hash),
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                current: s.token_hash == current,
            })
            .collect())
    }

    /// Revokes one of the caller's sessions by its id, at once on this node
    /// and on the others within the session cache's bound.
    pub async fn revoke_session(&self, user: &User, id: &str) -> ServiceResult<()> {
        let sessions = self.store.sessions_of(user.id, SESSIONS_LISTED).await?;
        let Some(session) = sessions.iter().find(|s| session_id(&s.token_hash) == id) else {
            return Err(ServiceError::NotFound("no such session"));
        };
        self.store.delete_session(&session.token_hash).await?;
        self.sessions.revoke(&session.token_hash);
        Ok(())
    }

    /// Changes the caller's password; every other session is revoked, the
    /// one the change was made with stays.
    pub async fn change_password(
        &self,
        user: &User,
        current_token: &Token,
        current_password: String,
        new_password: String,
    ) -> ServiceResult<()> {
        let new_password = Password::parse(new_password)
            .map_err(|m| ServiceError::Validation(ValidationErrors::single("new_password", m)))?;
        self.check_password(user, current_password, "current_password")
            .await?;
        let hash = hash_password(new_password).await?;
        self.store
            .set_password(user.id, &hash, Some(current_token.hash()))
            .await?;
        self.sessions.revoke_user(user.id);
        Ok(())
    }

    /// Deletes the caller's account (`password` confirms it): from this moment
    /// everything it made is hidden from every read (on other nodes within
    /// the feed cache's bound), its sessions are revoked and its username is
    /// free; the purge (`purge_deleted_accounts`) then removes the content.
    pub async fn delete_account(&self, user: &User, password: String) -> ServiceResult<()> {
        self.check_password(user, password, "password").await?;
        self.store.begin_account_deletion(user.id, now()).await?;
        // The deletion removed the sessions; this forgets their cached tokens.
        self.sessions.revoke_user(user.id);
        self.forget_gone_authors();
        Ok(())
    }

    /// Removes what deleted accounts made — comments (each in a transaction of
    /// its own, counts and newest comments of the posts exact), posts with
    /// their blobs, unfinished uploads — then the accounts; how many accounts.
    /// Run by the sweeper; safe to run anywhere, any time, more than once.
    pub async fn purge_deleted_accounts(&self) -> ServiceResult<usize> {
        use futures_util::{StreamExt, TryStreamExt};
        const BATCH: u32 = 500;
        const PURGE: domain::Remover = domain::Remover::Purge;
        let accounts = self.store.accounts_being_deleted().await?;
        for &user in &accounts {
            loop {
                let comments = self.store.comments_by_author(user, BATCH).await?;
                if comments.is_empty() {
                    break;
                }
                // A few at a time: each is its own short transaction, and
                // the embedded writer commits concurrent ones together.
                futures_util::stream::iter(comments)
                    .map(|(post, comment)| self.remove_comment(post, comment, &PURGE))
                    .buffer_unordered(PURGE_CONCURRENCY)
                    .try_collect::<Vec<_>>()
                    .await?;
            }
            loop {
                let posts = self.store.post_ids_by_author(user, BATCH).await?;
                if posts.is_empty() {
                    break;
                }
                for post in posts {
                    self.remove_post(post).await?;
                }
            }
            for upload in self.store.upload_ids_of(user, u32::MAX).await? {
                self.store.delete_upload(upload).await?;
            }
            self.store.finish_account_deletion(user).await?;
        }
        if !accounts.is_empty() {
            self.forget_gone_authors();
            if let Err(e) = self.collect_garbage().await {
                tracing::warn!(error = %e, "deleting blobs of deleted accounts; the sweeper will retry");
            }
        }
        Ok(accounts.len())
    }

    /// Refuses with a 422 on `field` unless `password` is the user's.
    pub(crate) async fn check_password(
        &self,
        user: &User,
        password: String,
        field: &'static str,
    ) -> ServiceResult<()> {
        let hash = self
            .store
            .credentials(&user.username)
            .await?
            .filter(|c| c.user.id == user.id)
            .map(|c| c.password_hash);
        if verify_password(password, hash).await? {
            Ok(())
        } else {
            Err(ServiceError::Validation(ValidationErrors::single(
                field,
                "is not the account's password",
            )))
        }
    }

    /// Operators: gives `username` a role (`imagegram admin set-role`, and
    /// admins through the API). It applies at once on this node, and on the
    /// others within the session cache's bound.
    pub async fn set_role(
        &self,
        actor: &super::Actor<'_>,
        username: &str,
        role: &str,
    ) -> ServiceResult<User> {
        let mut errors = ValidationErrors::default();
        let username = errors.check("username", Username::parse(username));
        let role = errors.check("role", Role::parse(role));
        errors.into_result()?;
        let role = role.expect("checked");
        let user = self
            .store
            .set_role(&username.expect("checked"), role)
            .await?
            .ok_or(ServiceError::NotFound("no such user"))?;
        self.sessions.revoke_user(user.id);
        self.audit_role_change(actor, &user, role).await?;
        Ok(user)
    }

    /// Operators: sets a new password for `username` and revokes all of the
    /// account's sessions (`imagegram admin reset-password`).
    pub async fn reset_password(&self, username: &str, password: String) -> ServiceResult<User> {
        let mut errors = ValidationErrors::default();
        let username = errors.check("username", Username::parse(username));
        let password = errors.check("password", Password::parse(password));
        errors.into_result()?;
        let user = self
            .store
            .user_by_username(&username.expect("checked"))
            .await?
            .ok_or(ServiceError::NotFound("no such user"))?;
        let hash = hash_password(password.expect("checked")).await?;
        self.store.set_password(user.id, &hash, None).await?;
        self.sessions.revoke_user(user.id);
        Ok(user)
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[test]
    fn session_ids_are_stable_distinct_and_not_the_hash() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert_eq!(session_id(&a), session_id(&a));
        assert_ne!(session_id(&a), session_id(&b));
        assert_ne!(session_id(&a), URL_SAFE_NO_PAD.encode(&a[..16]));
        assert_eq!(session_id(&a).len(), 22);
    }

    #[test]
    fn sessions_expire_after_the_ttl_unused_and_record_use_hourly() {
        let ttl = std::time::Duration::from_secs(30 * 24 * 3600);
        let t = now();
        assert_eq!(session_use(t, t, ttl), SessionUse::Recent);
        assert_eq!(
            session_use(t - chrono::Duration::minutes(59), t, ttl),
            SessionUse::Recent
        );
        assert_eq!(
            session_use(t - chrono::Duration::hours(2), t, ttl),
            SessionUse::Touch
        );
        assert_eq!(
            session_use(t - chrono::Duration::days(29), t, ttl),
            SessionUse::Touch
        );
        assert_eq!(
            session_use(t - chrono::Duration::days(30), t, ttl),
            SessionUse::Expired
        );
    }
}
