//! Resumable uploads and their chunks on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::{ms, queue_blob_deletion, uuid_col};
use crate::{ChunkCommit, KeyAnswer, StoreResult, Upload, UploadChunk, UploadLock, UploadStore};
use domain::{Timestamp, UploadId, UserId, from_millis};

fn upload_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        id: uuid_col(r, 0, UploadId::from_slice)?,
        owner: uuid_col(r, 1, UserId::from_slice)?,
        length: r.get::<_, i64>(2)? as u64,
        offset: r.get::<_, i64>(3)? as u64,
        metadata: r.get(4)?,
        created_at: from_millis(r.get(5)?),
        expires_at: from_millis(r.get(6)?),
    })
}

/// Queues every chunk blob of an upload for deletion (before its rows go).
pub(super) fn queue_chunk_deletions(
    conn: &rusqlite::Connection,
    id: UploadId,
) -> rusqlite::Result<()> {
    let keys: Vec<String> = conn
        .prepare_cached("SELECT key FROM upload_chunks WHERE upload_id = ?1")?
        .query_map([id.as_bytes()], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for key in keys {
        queue_blob_deletion(conn, &key)?;
    }
    Ok(())
}

#[async_trait]
impl UploadStore for SqliteStore {
    async fn create_upload(
        &self,
        u: &Upload,
        answer: Option<KeyAnswer<Upload>>,
    ) -> StoreResult<()> {
        let u = u.clone();
        self.write(move |tx| {
            if let Some(answer) = answer {
                super::idempotency::record_answer(tx, &answer.scope_key, &(answer.render)(&u))?;
            }
            tx.execute(
                "INSERT INTO uploads (id, owner_id, length, upload_offset, metadata, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    u.id.as_bytes(),
                    u.owner.as_bytes(),
                    u.length as i64,
                    u.offset as i64,
                    u.metadata,
                    ms(u.created_at),
                    ms(u.expires_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: UploadId) -> StoreResult<Option<Upload>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, owner_id, length, upload_offset, metadata, created_at, expires_at \
                     FROM uploads WHERE id = ?1",
                )?
                .query_row([id.as_bytes()], upload_from_row)
                .optional()?)
        })
        .await
    }

    async fn upload_lock(&self, id: UploadId) -> StoreResult<Option<UploadLock>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT upload_offset, lock_token, lock_until, release_wanted FROM uploads WHERE id = ?1",
                )?
                .query_row([id.as_bytes()], |r| {
                    Ok(UploadLock {
                        offset: r.get::<_, i64>(0)? as u64,
                        token: r
                            .get::<_, Option<Vec<u8>>>(1)?
                            .and_then(|b| uuid::Uuid::from_slice(&b).ok()),
                        until: r.get::<_, Option<i64>>(2)?.map(from_millis),
                        release_wanted: r.get::<_, i64>(3)? != 0,
                        releasing: r.get::<_, i64>(3)? == 2,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn swap_upload_lock(
        &self,
        id: UploadId,
        expected: Option<uuid::Uuid>,
        offset: u64,
        new: Option<(uuid::Uuid, Timestamp)>,
    ) -> StoreResult<bool> {
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE uploads SET lock_token = ?1, lock_until = ?2, release_wanted = 0 \
                     WHERE id = ?3 AND lock_token IS ?4 AND upload_offset = ?5",
                )?
                .execute(params![
                    new.map(|(t, _)| t.as_bytes().to_vec()),
                    new.map(|(_, until)| ms(until)),
                    id.as_bytes(),
                    expected.map(|t| t.as_bytes().to_vec()),
                    offset as i64
                ])?;
            Ok(n == 1)
        })
        .await
    }

    async fn request_upload_release(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()> {
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE uploads SET release_wanted = 1 WHERE id = ?1 AND lock_token = ?2 AND release_wanted = 0",
            )?
            .execute(params![id.as_bytes(), token.as_bytes()])?;
            Ok(())
        })
        .await
    }

    async fn acknowledge_upload_release(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()> {
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE uploads SET release_wanted = 2 WHERE id = ?1 AND lock_token = ?2",
            )?
            .execute(params![id.as_bytes(), token.as_bytes()])?;
            Ok(())
        })
        .await
    }

    async fn commit_chunk(&self, commit: ChunkCommit) -> StoreResult<Option<bool>> {
        let (id, token, chunk) = (commit.upload, commit.token, commit.chunk);
        let (expires_at, keep_until) = (commit.expires_at, commit.keep_until);
        self.write(move |tx| {
            let release_wanted: Option<i64> = tx
                .prepare_cached(
                    "UPDATE uploads SET upload_offset = upload_offset + ?1, expires_at = ?2, \
                     lock_token = CASE WHEN ?3 IS NULL THEN NULL ELSE lock_token END, lock_until = ?3, \
                     release_wanted = CASE WHEN ?3 IS NULL THEN 0 ELSE release_wanted END \
                     WHERE id = ?4 AND lock_token = ?5 AND upload_offset = ?6 RETURNING release_wanted",
                )?
                .query_row(
                    params![
                        chunk.length as i64,
                        ms(expires_at),
                        keep_until.map(ms),
                        id.as_bytes(),
                        token.as_bytes(),
                        chunk.start as i64
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(release_wanted) = release_wanted else {
                return Ok(None);
            };
            tx.prepare_cached(
                "INSERT INTO upload_chunks (key, upload_id, start, length) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![chunk.key, id.as_bytes(), chunk.start as i64, chunk.length as i64])?;
            Ok(Some(release_wanted != 0))
        })
        .await
    }

    async fn unlock_upload(&self, id: UploadId, token: uuid::Uuid) -> StoreResult<()> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE uploads SET lock_token = NULL, lock_until = NULL WHERE id = ?1 AND lock_token = ?2",
                params![id.as_bytes(), token.as_bytes()],
            )?;
            Ok(())
        })
        .await
    }

    async fn upload_chunks(&self, id: UploadId) -> StoreResult<Vec<UploadChunk>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT key, start, length FROM upload_chunks WHERE upload_id = ?1 ORDER BY start")?
                .query_map([id.as_bytes()], |r| {
                    Ok(UploadChunk {
                        key: r.get(0)?,
                        start: r.get::<_, i64>(1)? as u64,
                        length: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn chunk_exists(&self, key: &str) -> StoreResult<bool> {
        let key = key.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM upload_chunks WHERE key = ?1")?
                .exists([key])?)
        })
        .await
    }

    async fn delete_upload(&self, id: UploadId) -> StoreResult<bool> {
        self.write(move |tx| {
            queue_chunk_deletions(tx, id)?;
            Ok(tx.execute("DELETE FROM uploads WHERE id = ?1", [id.as_bytes()])? == 1)
        })
        .await
    }

    async fn expired_uploads(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<UploadId>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id FROM uploads WHERE expires_at <= ?1 LIMIT ?2")?
                .query_map(params![ms(now), limit], |r| {
                    uuid_col(r, 0, UploadId::from_slice)
                })?
                .collect::<Result<_, _>>()?)
        })
        .await
    }
}
