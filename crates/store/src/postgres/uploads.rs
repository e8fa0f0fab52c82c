//! Resumable uploads and their chunks on PostgreSQL.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::queue_blob_deletion;
use crate::{ChunkCommit, KeyAnswer, StoreResult, Upload, UploadChunk, UploadLock, UploadStore};
use domain::{Timestamp, UploadId, UserId};

fn upload_from_row(r: &PgRow) -> sqlx::Result<Upload> {
    Ok(Upload {
        id: UploadId::from_uuid(r.try_get("id")?),
        owner: UserId::from_uuid(r.try_get("owner_id")?),
        length: r.try_get::<i64, _>("length")? as u64,
        offset: r.try_get::<i64, _>("upload_offset")? as u64,
        metadata: r.try_get("metadata")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// Queues every chunk blob of an upload for deletion (before its rows go).
pub(super) async fn queue_chunk_deletions(
    conn: &mut sqlx::PgConnection,
    id: UploadId,
) -> sqlx::Result<()> {
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM upload_chunks WHERE upload_id = $1")
            .bind(id.as_uuid())
            .fetch_all(&mut *conn)
            .await?;
    for key in keys {
        queue_blob_deletion(&mut *conn, &key).await?;
    }
    Ok(())
}

#[async_trait]
impl UploadStore for PgStore {
    async fn create_upload(
        &self,
        u: &Upload,
        answer: Option<KeyAnswer<Upload>>,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(
            "INSERT INTO uploads (id, owner_id, length, upload_offset, metadata, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(u.id.as_uuid())
        .bind(u.owner.as_uuid())
        .bind(u.length as i64)
        .bind(u.offset as i64)
        .bind(&u.metadata)
        .bind(u.created_at)
        .bind(u.expires_at)
        .execute(&mut *tx)
        .await?;
        if let Some(answer) = answer {
            super::idempotency::record_answer(&mut tx, &answer.scope_key, &(answer.render)(u))
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upload(&self, id: UploadId) -> StoreResult<Option<Upload>> {
        Ok(sqlx::query(
            "SELECT id, owner_id, length, upload_offset, metadata, created_at, expires_at FROM uploads WHERE id = $1",
        )
        .bind(id.as_uuid())
        .try_map(|r: PgRow| upload_from_row(&r))
        .fetch_optional(&mut *self.conn().await?)
        .await?)
    }

    async fn upload_lock(&self, id: UploadId) -> StoreResult<Option<UploadLock>> {
        let row: Option<(i64, Option<uuid::Uuid>, Option<Timestamp>, i16)> = sqlx::query_as(
            "SELECT upload_offset, lock_token, lock_until, release_wanted FROM uploads WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&mut *self.conn().await?)
        .await?;
        Ok(row.map(|(offset, token, until, release)| UploadLock {
            offset: offset as u64,
            token,
            until,
            release_wanted: release != 0,
            releasing: release == 2,
        }))
    }

    async fn swap_upload_lock(
        &self,
        id: UploadId,
        expected: Option<uuid::Uuid>,
        offset: u64,
        new: Option<(uuid::Uuid, Timestamp)>,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE uploads SET lock_token = $1, lock_until = $2, release_wanted = 0 \
             WHERE id = $3 AND lock_token IS NOT DISTINCT FROM $4 AND upload_offset = $5",
        )
        .bind(new.map(|(t, _)| t))
        .bind(new.map(|(_, until)| until))
        .bind(id.as_uuid())
        .bind(expected)
        .bind(offset as i64)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(n.rows_affected() == 1)
    }

    async fn request_upload_release(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()> {
        sqlx::query(
            "UPDATE uploads SET release_wanted = 1 WHERE id = $1 AND lock_token = $2 AND release_wanted = 0",
        )
        .bind(id.as_uuid())
        .bind(token)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn acknowledge_upload_release(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE uploads SET release_wanted = 2 WHERE id = $1 AND lock_token = $2")
            .bind(id.as_uuid())
            .bind(token)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn commit_chunk(&self, commit: ChunkCommit) -> StoreResult<Option<bool>> {
        let (id, token, chunk) = (commit.upload, commit.token, &commit.chunk);
        let (expires_at, keep_until) = (commit.expires_at, commit.keep_until);
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let release_wanted: Option<i16> = sqlx::query_scalar(
            "UPDATE uploads SET upload_offset = upload_offset + $1, expires_at = $2, \
             lock_token = CASE WHEN $3::timestamptz IS NULL THEN NULL ELSE lock_token END, lock_until = $3, \
             release_wanted = CASE WHEN $3::timestamptz IS NULL THEN 0 ELSE release_wanted END \
             WHERE id = $4 AND lock_token = $5 AND upload_offset = $6 RETURNING release_wanted",
        )
        .bind(chunk.length as i64)
        .bind(expires_at)
        .bind(keep_until)
        .bind(id.as_uuid())
        .bind(token)
        .bind(chunk.start as i64)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(release_wanted) = release_wanted else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO upload_chunks (key, upload_id, start, length) VALUES ($1, $2, $3, $4)",
        )
        .bind(&chunk.key)
        .bind(id.as_uuid())
        .bind(chunk.start as i64)
        .bind(chunk.length as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(release_wanted != 0))
    }

    async fn unlock_upload(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE uploads SET lock_token = NULL, lock_until = NULL WHERE id = $1 AND lock_token = $2")
            .bind(id.as_uuid())
            .bind(token)
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn upload_chunks(&self, id: UploadId) -> StoreResult<Vec<UploadChunk>> {
        Ok(sqlx::query(
            "SELECT key, start, length FROM upload_chunks WHERE upload_id = $1 ORDER BY start",
        )
        .bind(id.as_uuid())
        .try_map(|r: PgRow| {
            Ok(UploadChunk {
                key: r.try_get("key")?,
                start: r.try_get::<i64, _>("start")? as u64,
                length: r.try_get::<i64, _>("length")? as u64,
            })
        })
        .fetch_all(&mut *self.conn().await?)
        .await?)
    }

    async fn chunk_exists(&self, key: &str) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar::<_, i32>("SELECT 1 FROM upload_chunks WHERE key = $1")
                .bind(key)
                .fetch_optional(&mut *self.conn().await?)
                .await?
                .is_some(),
        )
    }

    async fn delete_upload(&self, id: UploadId) -> StoreResult<bool> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        queue_chunk_deletions(&mut tx, id).await?;
        let n = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n.rows_affected() == 1)
    }

    async fn expired_uploads(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<UploadId>> {
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM uploads WHERE expires_at <= $1 LIMIT $2")
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.conn().await?)
                .await?;
        Ok(ids.into_iter().map(UploadId::from_uuid).collect())
    }
}
