use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::queue_blob_deletion;
use crate::domain::{Timestamp, UploadId, UserId};
use crate::store::{AppendLock, StoreResult, Upload, UploadChunk, UploadStore};

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
    async fn create_upload(&self, u: &Upload) -> StoreResult<()> {
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn upload(&self, id: UploadId) -> StoreResult<Option<Upload>> {
        Ok(sqlx::query(
            "SELECT id, owner_id, length, upload_offset, metadata, created_at, expires_at FROM uploads WHERE id = $1",
        )
        .bind(id.as_uuid())
        .try_map(|r: PgRow| upload_from_row(&r))
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn lock_upload(
        &self,
        id: UploadId,
        offset: u64,
        token: uuid::Uuid,
        until: Timestamp,
        now: Timestamp,
    ) -> StoreResult<AppendLock> {
        let mut tx = self.pool.begin().await?;
        let row: Option<(i64, Option<Timestamp>)> = sqlx::query_as(
            "SELECT upload_offset, lock_until FROM uploads WHERE id = $1 FOR UPDATE",
        )
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((current, lock_until)) = row else {
            return Ok(AppendLock::NotFound);
        };
        if lock_until.is_some_and(|t| t > now) {
            return Ok(AppendLock::Busy);
        }
        if current as u64 != offset {
            return Ok(AppendLock::OffsetMismatch {
                current: current as u64,
            });
        }
        sqlx::query("UPDATE uploads SET lock_token = $1, lock_until = $2 WHERE id = $3")
            .bind(token)
            .bind(until)
            .bind(id.as_uuid())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(AppendLock::Granted)
    }

    async fn extend_upload_lock(
        &self,
        id: UploadId,
        token: uuid::Uuid,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE uploads SET lock_until = $1 WHERE id = $2 AND lock_token = $3")
            .bind(until)
            .bind(id.as_uuid())
            .bind(token)
            .execute(&self.pool)
            .await?;
        Ok(n.rows_affected() == 1)
    }

    async fn commit_chunk(
        &self,
        id: UploadId,
        token: uuid::Uuid,
        chunk: &UploadChunk,
        expires_at: Timestamp,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE uploads SET upload_offset = upload_offset + $1, lock_token = NULL, lock_until = NULL, \
             expires_at = $2 WHERE id = $3 AND lock_token = $4 AND upload_offset = $5",
        )
        .bind(chunk.length as i64)
        .bind(expires_at)
        .bind(id.as_uuid())
        .bind(token)
        .bind(chunk.start as i64)
        .execute(&mut *tx)
        .await?;
        if n.rows_affected() == 0 {
            return Ok(false);
        }
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
        Ok(true)
    }

    async fn unlock_upload(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE uploads SET lock_token = NULL, lock_until = NULL WHERE id = $1 AND lock_token = $2")
            .bind(id.as_uuid())
            .bind(token)
            .execute(&self.pool)
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
        .fetch_all(&self.pool)
        .await?)
    }

    async fn delete_upload(&self, id: UploadId) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
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
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().map(UploadId::from_uuid).collect())
    }
}
