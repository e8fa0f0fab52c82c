//! Users and sessions on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::{USER_COLUMNS, ms, user_from_row, uuid_col};
use crate::idempotency_scope_range;
use crate::role_from_column;
use crate::{
    AccountStore, Credentials, KeyAnswer, SessionAccount, SessionRecord, StoreError, StoreResult,
};
use domain::{CommentId, PostId, Role, Timestamp, UploadId, User, UserId, Username};

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
                "SELECT {USER_COLUMNS}, u.password_hash, u.suspended_at IS NOT NULL FROM users u \
                 WHERE u.username = ?1"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([username.as_str()], |r| {
                    Ok(Credentials {
                        user: user_from_row(r, 0)?,
                        password_hash: r.get(3)?,
                        suspended: r.get(4)?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<(User, Role)>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {USER_COLUMNS}, u.role FROM users u WHERE u.id = ?1 AND u.deleted_at IS NULL"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([id.as_bytes()], |r| {
                    Ok((user_from_row(r, 0)?, role_from_column(&r.get::<_, String>(3)?)))
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

    async fn user_by_session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionAccount>> {
        let hash = *token_hash;
        self.read(move |conn| {
            let sql = format!(
                "SELECT {USER_COLUMNS}, u.role, s.last_used_at FROM sessions s JOIN users u ON u.id = s.user_id \
                 WHERE s.token_hash = ?1 AND u.suspended_at IS NULL"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_row([hash.as_slice()], |r| {
                    Ok(SessionAccount {
                        user: user_from_row(r, 0)?,
                        role: role_from_column(&r.get::<_, String>(3)?),
                        last_used_at: domain::from_millis(r.get(4)?),
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn sessions_of(&self, user: UserId, limit: u32) -> StoreResult<Vec<SessionRecord>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT token_hash, created_at, last_used_at FROM sessions WHERE user_id = ?1 \
                 ORDER BY last_used_at DESC, created_at DESC LIMIT ?2",
            )?;
            let rows = statement.query_map(params![user.as_bytes(), limit], |r| {
                Ok(SessionRecord {
                    token_hash: r.get(0)?,
                    created_at: domain::from_millis(r.get(1)?),
                    last_used_at: domain::from_millis(r.get(2)?),
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<[u8; 32]>,
    ) -> StoreResult<()> {
        let hash = password_hash.to_owned();
        self.write(move |tx| {
            tx.execute(
                "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                params![hash, user.as_bytes()],
            )?;
            let keep = keep.map(|k| k.to_vec()).unwrap_or_default();
            tx.prepare_cached("DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2")?
                .execute(params![user.as_bytes(), keep])?;
            Ok(())
        })
        .await
    }

    async fn set_role(&self, username: &Username, role: Role) -> StoreResult<Option<User>> {
        let username = username.clone();
        self.write(move |tx| {
            Ok(tx
                .prepare_cached(
                    "UPDATE users SET role = ?1 WHERE username = ?2 RETURNING id, username, created_at",
                )?
                .query_row(params![role.as_str(), username.as_str()], |r| {
                    user_from_row(r, 0)
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

    async fn begin_account_deletion(&self, user: UserId, at: Timestamp) -> StoreResult<()> {
        let scopes = idempotency_scope_range(user);
        self.write(move |tx| {
            // '~' is not allowed in usernames, so the freed name cannot clash.
            let marked = tx.execute(
                "UPDATE users SET deleted_at = ?1, username = '~' || lower(hex(id)), password_hash = '' \
                 WHERE id = ?2 AND deleted_at IS NULL",
                params![ms(at), user.as_bytes()],
            )?;
            if marked == 0 {
                return Ok(());
            }
            tx.execute("DELETE FROM sessions WHERE user_id = ?1", [user.as_bytes()])?;
            tx.execute(
                "DELETE FROM blocks WHERE blocker_id = ?1 OR blocked_id = ?1",
                [user.as_bytes()],
            )?;
            tx.execute("DELETE FROM events WHERE user_id = ?1", [user.as_bytes()])?;
            super::exports::delete_exports(tx, "user_id = ?1", &user.as_bytes().as_slice())?;
            tx.execute(
                "DELETE FROM idempotency_keys WHERE scope_key >= ?1 AND scope_key < ?2",
                params![scopes.0, scopes.1],
            )?;
            Ok(())
        })
        .await
    }

    async fn accounts_being_deleted(&self) -> StoreResult<Vec<UserId>> {
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT id FROM users WHERE deleted_at IS NOT NULL")?;
            let rows = statement.query_map([], |r| uuid_col(r, 0, UserId::from_slice))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn hidden_accounts(&self) -> StoreResult<Vec<UserId>> {
        self.read(move |conn| {
            // Two arms, so that each is read from its partial index.
            let mut statement = conn.prepare_cached(
                "SELECT id FROM users WHERE deleted_at IS NOT NULL \
                 UNION SELECT id FROM users WHERE suspended_at IS NOT NULL",
            )?;
            let rows = statement.query_map([], |r| uuid_col(r, 0, UserId::from_slice))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn comments_by_author(
        &self,
        author: UserId,
        limit: u32,
    ) -> StoreResult<Vec<(PostId, CommentId)>> {
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT post_id, id FROM comments WHERE author_id = ?1 LIMIT ?2")?;
            let rows = statement.query_map(params![author.as_bytes(), limit], |r| {
                Ok((
                    uuid_col(r, 0, PostId::from_slice)?,
                    uuid_col(r, 1, CommentId::from_slice)?,
                ))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn post_ids_by_author(&self, author: UserId, limit: u32) -> StoreResult<Vec<PostId>> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT id FROM posts INDEXED BY posts_by_any_author WHERE author_id = ?1 LIMIT ?2",
            )?;
            let rows = statement.query_map(params![author.as_bytes(), limit], |r| {
                uuid_col(r, 0, PostId::from_slice)
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn upload_ids_of(&self, owner: UserId, limit: u32) -> StoreResult<Vec<UploadId>> {
        self.read(move |conn| {
            let mut statement =
                conn.prepare_cached("SELECT id FROM uploads WHERE owner_id = ?1 LIMIT ?2")?;
            let rows = statement.query_map(params![owner.as_bytes(), limit], |r| {
                uuid_col(r, 0, UploadId::from_slice)
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn finish_account_deletion(&self, user: UserId) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM users WHERE id = ?1 AND deleted_at IS NOT NULL",
                [user.as_bytes()],
            )?;
            Ok(())
        })
        .await
    }

    async fn comment_counts_by(
        &self,
        authors: &[UserId],
        posts: &[PostId],
    ) -> StoreResult<Vec<(PostId, i64)>> {
        if authors.is_empty() || posts.is_empty() {
            return Ok(Vec::new());
        }
        let mut values: Vec<Vec<u8>> = authors.iter().map(|a| a.as_bytes().to_vec()).collect();
        values.extend(posts.iter().map(|p| p.as_bytes().to_vec()));
        let (n_authors, n_posts) = (authors.len(), posts.len());
        self.read(move |conn| {
            // Both lists are short (accounts being deleted; one page of posts),
            // so the statement is made for their lengths.
            let sql = format!(
                "SELECT post_id, count(*) FROM comments INDEXED BY comments_by_author \
                 WHERE author_id IN ({}) AND post_id IN ({}) GROUP BY post_id",
                vec!["?"; n_authors].join(","),
                vec!["?"; n_posts].join(",")
            );
            let mut statement = conn.prepare(&sql)?;
            let rows = statement.query_map(rusqlite::params_from_iter(values.iter()), |r| {
                Ok((uuid_col(r, 0, PostId::from_slice)?, r.get(1)?))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
