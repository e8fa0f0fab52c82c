//! Users and sessions on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::user_from_row;
use crate::{
    AccountStore, Credentials, KeyAnswer, SessionAccount, SessionRecord, StoreError, StoreResult,
    idempotency_scope_range, role_from_column,
};
use domain::{CommentId, PostId, Role, Timestamp, UploadId, User, UserId, Username};

#[async_trait]
impl AccountStore for PgStore {
    async fn create_user(
        &self,
        user: &User,
        password_hash: &str,
        answer: Option<KeyAnswer<User>>,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username) DO NOTHING",
        )
        .bind(user.id.as_uuid())
        .bind(user.username.as_str())
        .bind(password_hash)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::UsernameTaken);
        }
        if let Some(answer) = answer {
            super::idempotency::record_answer(&mut tx, &answer.scope_key, &(answer.render)(user))
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn credentials(&self, username: &Username) -> StoreResult<Option<Credentials>> {
        Ok(sqlx::query(
            "SELECT u.id, u.username, u.created_at, u.password_hash, u.suspended_at IS NOT NULL AS suspended \
             FROM users u WHERE u.username = $1",
        )
        .bind(username.as_str())
        .try_map(|r: PgRow| {
            Ok(Credentials {
                user: user_from_row(&r, "id", "created_at")?,
                password_hash: r.try_get("password_hash")?,
                suspended: r.try_get("suspended")?,
            })
        })
        .fetch_optional(&mut *self.conn().await?)
        .await?)
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<(User, Role)>> {
        Ok(sqlx::query(
            "SELECT u.id, u.username, u.created_at, u.role FROM users u \
             WHERE u.id = $1 AND u.deleted_at IS NULL",
        )
        .bind(id.as_uuid())
        .try_map(|r: PgRow| {
            Ok((
                user_from_row(&r, "id", "created_at")?,
                role_from_column(r.try_get("role")?),
            ))
        })
        .fetch_optional(&mut *self.conn().await?)
        .await?)
    }

    async fn create_session(
        &self,
        token_hash: &[u8; 32],
        user: &User,
        now: Timestamp,
        answer: Option<KeyAnswer<User>>,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, last_used_at) VALUES ($1, $2, $3, $3)")
            .bind(token_hash.as_slice())
            .bind(user.id.as_uuid())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if let Some(answer) = answer {
            super::idempotency::record_answer(&mut tx, &answer.scope_key, &(answer.render)(user))
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn user_by_session(&self, token_hash: &[u8; 32]) -> StoreResult<Option<SessionAccount>> {
        Ok(sqlx::query(
            "SELECT u.id, u.username, u.created_at, u.role, s.last_used_at FROM sessions s \
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND u.suspended_at IS NULL",
        )
        .bind(token_hash.as_slice())
        .try_map(|r: PgRow| {
            Ok(SessionAccount {
                user: user_from_row(&r, "id", "created_at")?,
                role: role_from_column(r.try_get("role")?),
                last_used_at: r.try_get("last_used_at")?,
            })
        })
        .fetch_optional(&mut *self.conn().await?)
        .await?)
    }

    async fn sessions_of(&self, user: UserId, limit: u32) -> StoreResult<Vec<SessionRecord>> {
        Ok(sqlx::query(
            "SELECT token_hash, created_at, last_used_at FROM sessions WHERE user_id = $1 \
             ORDER BY last_used_at DESC, created_at DESC LIMIT $2",
        )
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .try_map(|r: PgRow| {
            Ok(SessionRecord {
                token_hash: token_hash(&r)?,
                created_at: r.try_get("created_at")?,
                last_used_at: r.try_get("last_used_at")?,
            })
        })
        .fetch_all(&mut *self.conn().await?)
        .await?)
    }

    async fn set_password(
        &self,
        user: UserId,
        password_hash: &str,
        keep: Option<[u8; 32]>,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash IS DISTINCT FROM $2")
            .bind(user.as_uuid())
            .bind(keep.as_ref().map(|k| k.as_slice()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_role(&self, username: &Username, role: Role) -> StoreResult<Option<User>> {
        Ok(sqlx::query(
            "UPDATE users SET role = $1 WHERE username = $2 RETURNING id, username, created_at",
        )
        .bind(role.as_str())
        .bind(username.as_str())
        .try_map(|r: PgRow| user_from_row(&r, "id", "created_at"))
        .fetch_optional(&mut *self.conn().await?)
        .await?)
    }

    async fn touch_session(&self, token_hash: &[u8; 32], now: Timestamp) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(token_hash.as_slice())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn purge_sessions(&self, before: Timestamp) -> StoreResult<u64> {
        let n = sqlx::query("DELETE FROM sessions WHERE last_used_at < $1")
            .bind(before)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(n.rows_affected())
    }

    async fn delete_session(&self, token_hash: &[u8; 32]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash.as_slice())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn begin_account_deletion(&self, user: UserId, at: Timestamp) -> StoreResult<()> {
        let (from, to) = idempotency_scope_range(user);
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // '~' is not allowed in usernames, so the freed name cannot clash.
        let marked = sqlx::query(
            "UPDATE users SET deleted_at = $1, username = '~' || replace(id::text, '-', ''), \
             password_hash = '' WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(user.as_uuid())
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(());
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 OR blocked_id = $1")
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM events WHERE user_id = $1")
            .bind(user.as_uuid())
            .execute(&mut *tx)
            .await?;
        super::exports::delete_exports_of(&mut tx, user).await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE scope_key >= $1 AND scope_key < $2")
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn accounts_being_deleted(&self) -> StoreResult<Vec<UserId>> {
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM users WHERE deleted_at IS NOT NULL")
                .fetch_all(&mut *self.conn().await?)
                .await?;
        Ok(ids.into_iter().map(UserId::from_uuid).collect())
    }

    async fn hidden_accounts(&self) -> StoreResult<Vec<UserId>> {
        // Two arms, so that each is read from its partial index.
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE deleted_at IS NOT NULL \
             UNION SELECT id FROM users WHERE suspended_at IS NOT NULL",
        )
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(ids.into_iter().map(UserId::from_uuid).collect())
    }

    async fn comments_by_author(
        &self,
        author: UserId,
        limit: u32,
    ) -> StoreResult<Vec<(PostId, CommentId)>> {
        let rows: Vec<(uuid::Uuid, uuid::Uuid)> =
            sqlx::query_as("SELECT post_id, id FROM comments WHERE author_id = $1 LIMIT $2")
                .bind(author.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&mut *self.conn().await?)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(p, c)| (PostId::from_uuid(p), CommentId::from_uuid(c)))
            .collect())
    }

    async fn post_ids_by_author(&self, author: UserId, limit: u32) -> StoreResult<Vec<PostId>> {
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM posts WHERE author_id = $1 LIMIT $2")
                .bind(author.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&mut *self.conn().await?)
                .await?;
        Ok(ids.into_iter().map(PostId::from_uuid).collect())
    }

    async fn upload_ids_of(&self, owner: UserId, limit: u32) -> StoreResult<Vec<UploadId>> {
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM uploads WHERE owner_id = $1 LIMIT $2")
                .bind(owner.as_uuid())
                .bind(i64::from(limit))
                .fetch_all(&mut *self.conn().await?)
                .await?;
        Ok(ids.into_iter().map(UploadId::from_uuid).collect())
    }

    async fn finish_account_deletion(&self, user: UserId) -> StoreResult<()> {
        sqlx::query("DELETE FROM users WHERE id = $1 AND deleted_at IS NOT NULL")
            .bind(user.as_uuid())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn comment_counts_by(
        &self,
        authors: &[UserId],
        posts: &[PostId],
    ) -> StoreResult<Vec<(PostId, i64)>> {
        if authors.is_empty() || posts.is_empty() {
            return Ok(Vec::new());
        }
        let authors: Vec<uuid::Uuid> = authors.iter().map(|a| *a.as_uuid()).collect();
        let posts: Vec<uuid::Uuid> = posts.iter().map(|p| *p.as_uuid()).collect();
        let rows: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
            "SELECT post_id, count(*) FROM comments WHERE author_id = ANY($1) AND post_id = ANY($2) \
             GROUP BY post_id",
        )
        .bind(authors)
        .bind(posts)
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(p, n)| (PostId::from_uuid(p), n))
            .collect())
    }
}

fn token_hash(row: &PgRow) -> sqlx::Result<[u8; 32]> {
    let bytes: Vec<u8> = row.try_get("token_hash")?;
    bytes
        .try_into()
        .map_err(|_| sqlx::Error::Decode("a token hash is 32 bytes".into()))
}
