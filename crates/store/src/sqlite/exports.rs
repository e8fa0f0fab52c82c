//! Data exports on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use super::rows::{
    COMMENT_COLUMNS, append_event, comment_from_row, ms, queue_blob_deletion, uuid_col,
};
use crate::{ExportStore, StoreResult, stored};
use domain::export::{Export, ExportStatus, export_blob_key};
use domain::{Comment, CommentId, ExportId, PostId, Timestamp, UserId, from_millis};

const EXPORT_COLUMNS: &str = "id, user_id, status, created_at, expires_at";

fn export_from_row(r: &Row<'_>) -> rusqlite::Result<(Export, String)> {
    Ok((
        Export {
            id: uuid_col(r, 0, ExportId::from_slice)?,
            user: uuid_col(r, 1, UserId::from_slice)?,
            status: ExportStatus::Processing,
            created_at: from_millis(r.get(3)?),
            expires_at: from_millis(r.get(4)?),
        },
        r.get(2)?,
    ))
}

/// The row with its stored status read back.
fn decoded((mut export, status): (Export, String)) -> anyhow::Result<Export> {
    export.status = stored(ExportStatus::parse(&status), "status")?;
    Ok(export)
}

/// Deletes exports (all of a user's, or the expired) and queues their zips.
pub(super) fn delete_exports(
    tx: &rusqlite::Connection,
    filter: &str,
    param: &dyn rusqlite::ToSql,
) -> rusqlite::Result<u64> {
    let ids: Vec<ExportId> = tx
        .prepare(&format!("DELETE FROM exports WHERE {filter} RETURNING id"))?
        .query_map([param], |r| uuid_col(r, 0, ExportId::from_slice))?
        .collect::<Result<_, _>>()?;
    for id in &ids {
        queue_blob_deletion(tx, &export_blob_key(*id))?;
    }
    Ok(ids.len() as u64)
}

#[async_trait]
impl ExportStore for SqliteStore {
    async fn create_export(&self, export: &Export) -> StoreResult<Export> {
        let export = export.clone();
        let row = self
            .write(move |tx| {
                let sql = format!(
                    "SELECT {EXPORT_COLUMNS} FROM exports WHERE user_id = ?1 AND status = 'processing'"
                );
                if let Some(building) = tx
                    .prepare_cached(&sql)?
                    .query_row([export.user.as_bytes()], export_from_row)
                    .optional()?
                {
                    return Ok(building);
                }
                tx.prepare_cached(
                    "INSERT INTO exports (id, user_id, status, created_at, expires_at) \
                     VALUES (?1, ?2, 'processing', ?3, ?4)",
                )?
                .execute(params![
                    export.id.as_bytes(),
                    export.user.as_bytes(),
                    ms(export.created_at),
                    ms(export.expires_at)
                ])?;
                Ok((export, "processing".to_owned()))
            })
            .await?;
        Ok(decoded(row)?)
    }

    async fn export(&self, id: ExportId) -> StoreResult<Option<Export>> {
        let row = self
            .read(move |conn| {
                let sql = format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE id = ?1");
                Ok(conn
                    .prepare_cached(&sql)?
                    .query_row([id.as_bytes()], export_from_row)
                    .optional()?)
            })
            .await?;
        Ok(row.map(decoded).transpose()?)
    }

    async fn claim_export(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<Export>> {
        let row = self
            .write(move |tx| {
                let sql = format!(
                    "UPDATE exports SET lease_until = ?2 WHERE id = (SELECT id FROM exports \
                     WHERE status = 'processing' AND (lease_until IS NULL OR lease_until < ?1) \
                     ORDER BY created_at LIMIT 1) RETURNING {EXPORT_COLUMNS}"
                );
                Ok(tx
                    .prepare_cached(&sql)?
                    .query_row(params![ms(now), ms(lease_until)], export_from_row)
                    .optional()?)
            })
            .await?;
        Ok(row.map(decoded).transpose()?)
    }

    async fn finish_export(
        &self,
        id: ExportId,
        status: ExportStatus,
        data: serde_json::Value,
    ) -> StoreResult<()> {
        let notified = self
            .write(move |tx| {
                let user: Option<Vec<u8>> = tx
                    .prepare_cached(
                        "UPDATE exports SET status = ?1, lease_until = NULL \
                         WHERE id = ?2 AND status = 'processing' RETURNING user_id",
                    )?
                    .query_row(params![status.as_str(), id.as_bytes()], |r| r.get(0))
                    .optional()?;
                let Some(user) = user.filter(|_| status == ExportStatus::Ready) else {
                    return Ok(None);
                };
                append_event(tx, &user, "export.ready", &data)?;
                Ok(UserId::from_slice(&user))
            })
            .await?;
        if let Some(user) = notified {
            self.event_wakers.wake(user);
        }
        Ok(())
    }

    async fn purge_exports(&self, now: Timestamp) -> StoreResult<u64> {
        self.write(move |tx| Ok(delete_exports(tx, "expires_at < ?1", &ms(now))?))
            .await
    }

    async fn comments_of_author(
        &self,
        author: UserId,
        after: Option<(PostId, CommentId)>,
        limit: u32,
    ) -> StoreResult<Vec<Comment>> {
        let (post, comment) = after
            .map(|(p, c)| (p.as_bytes().to_vec(), c.as_bytes().to_vec()))
            .unwrap_or_default();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {COMMENT_COLUMNS} FROM comments c INDEXED BY comments_by_author \
                 JOIN users u ON u.id = c.author_id \
                 WHERE c.author_id = ?1 AND (c.post_id, c.id) > (?2, ?3) \
                 ORDER BY c.post_id, c.id LIMIT ?4"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let rows = statement.query_map(
                params![author.as_bytes(), post, comment, limit],
                comment_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
