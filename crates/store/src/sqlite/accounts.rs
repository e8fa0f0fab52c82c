//! Users and sessions on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::{USER_COLUMNS, ms, user_from_row};
use crate::{AccountStore, Credentials, KeyAnswer, StoreError, StoreResult};
use domain::{Timestamp, User, Username};

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(
        &self,
        user: &User,
        password_hash: &str,
        answer: Option<KeyAnswer<User>>,
    ) -> StoreResult<()> {
        let user = user.clone();
        let hash = password_hash.to_owned();
        self.write(move |tx| {
            let inserted = tx.execute(
                "INSERT INTO users (id, username, password_hash, created_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (username) DO NOTHING",
                params![user.id.as_bytes(), user.username.as_str(), hash, ms(user.created_at)],
            )?;
            if inserted == 0 {
                return Err(StoreError::UsernameTaken);
            }
            if let Some(answer) = answer {
                super::idempotency::record_answer(tx, &answer.scope_key, &(answer.render)(&user))?;
            }
            Ok(())
        })
        .await
    }

    async fn credentials(&self, username: &Username) -> StoreResult<Option<Credentials>> {
        let username = username.clone();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.username = ?1"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([username.as_str()], |r| {
                    Ok(Credentials {
                        user: user_from_row(r, 0)?,
                        password_hash: r.get(3)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn create_session(
        &self,
        token_hash: &[u8; 32],
        user: &User,
        now: Timestamp,
        answer: Option<KeyAnswer<User>>,
    ) -> StoreResult<()> {
        let hash = *token_hash;
        let user = user.clone();
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, last_used_at) VALUES (?1, ?2, ?3, ?3)",
                params![hash.as_slice(), user.id.as_bytes(), ms(now)],
            )?;
            if let Some(answer) = answer {
                super::idempotency::record_answer(tx, &answer.scope_key, &(answer.render)(&user))?;
            }
            Ok(())
        })
        .await
    }

    async fn user_by_session(
        &self,
        token_hash: &[u8; 32],
    ) -> StoreResult<Option<(User, Timestamp)>> {
        let hash = *token_hash;
        self.read(move |conn| {
            let sql = format!(
                "SELECT {USER_COLUMNS}, s.last_used_at FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = ?1"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([hash.as_slice()], |r| {
                    let user = user_from_row(r, 0)?;
                    let used = domain::from_millis(r.get(r.as_ref().column_count() - 1)?);
                    Ok((user, used))
                })
                .optional()?)
        })
        .await
    }

    async fn touch_session(&self, token_hash: &[u8; 32], now: Timestamp) -> StoreResult<()> {
        let hash = *token_hash;
        self.write(move |tx| {
            tx.prepare_cached("UPDATE sessions SET last_used_at = ?1 WHERE token_hash = ?2")?
                .execute(params![ms(now), hash.as_slice()])?;
            Ok(())
        })
        .await
    }

    async fn purge_sessions(&self, before: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| {
            Ok(tx.execute("DELETE FROM sessions WHERE last_used_at < ?1", [ms(before)])? as u64)
        })
        .await
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()> {
        let hash = *token_hash;
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                [hash.as_slice()],
            )?;
            Ok(())
        })
        .await
    }
}
