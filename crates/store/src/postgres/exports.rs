//! Data exports on PostgreSQL.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use super::rows::{COMMENT_COLUMNS, append_event, comment_from_row, queue_blob_deletion};
use crate::{ExportStore, StoreResult, stored};
use domain::export::{Export, ExportStatus, export_blob_key};
use domain::{Comment, CommentId, ExportId, PostId, Timestamp, UserId};

const EXPORT_COLUMNS: &str = "id, user_id, status, created_at, expires_at";

fn export_from_row(r: &PgRow) -> sqlx::Result<(Export, String)> {
    Ok((
        Export {
            id: ExportId::from_uuid(r.try_get("id")?),
            user: UserId::from_uuid(r.try_get("user_id")?),
            status: ExportStatus::Processing,
            created_at: r.try_get("created_at")?,
            expires_at: r.try_get("expires_at")?,
        },
        r.try_get("status")?,
    ))
}

/// The row with its stored status read back.
fn decoded((mut export, status): (Export, String)) -> anyhow::Result<Export> {
    export.status = stored(ExportStatus::parse(&status), "status")?;
    Ok(export)
}

/// Deletes the user's exports and queues their zips (an account deletion).
pub(super) async fn delete_exports_of(
    conn: &mut sqlx::PgConnection,
    user: UserId,
) -> sqlx::Result<()> {
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("DELETE FROM exports WHERE user_id = $1 RETURNING id")
            .bind(user.as_uuid())
            .fetch_all(&mut *conn)
            .await?;
    for id in ids {
        queue_blob_deletion(&mut *conn, &export_blob_key(ExportId::from_uuid(id))).await?;
    }
    Ok(())
}

#[async_trait]
impl ExportStore for PgStore {
    async fn create_export(&self, export: &Export) -> StoreResult<Export> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // One export is built at a time per user: the user's row is the lock.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(export.user.as_uuid())
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {EXPORT_COLUMNS} FROM exports WHERE user_id = $1 AND status = 'processing'"
        );
        let building = sqlx::query(AssertSqlSafe(sql))
            .bind(export.user.as_uuid())
            .try_map(|r: PgRow| export_from_row(&r))
            .fetch_optional(&mut *tx)
            .await?;
        let row = match building {
            Some(row) => row,
            None => {
                sqlx::query(
                    "INSERT INTO exports (id, user_id, status, created_at, expires_at) \
                     VALUES ($1, $2, 'processing', $3, $4)",
                )
                .bind(export.id.as_uuid())
                .bind(export.user.as_uuid())
                .bind(export.created_at)
                .bind(export.expires_at)
                .execute(&mut *tx)
                .await?;
                (export.clone(), "processing".to_owned())
            }
        };
        tx.commit().await?;
        Ok(decoded(row)?)
    }

    async fn export(&self, id: ExportId) -> StoreResult<Option<Export>> {
        let sql = format!("SELECT {EXPORT_COLUMNS} FROM exports WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_uuid())
            .try_map(|r: PgRow| export_from_row(&r))
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(row.map(decoded).transpose()?)
    }

    async fn claim_export(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<Export>> {
        let sql = format!(
            "UPDATE exports SET lease_until = $2 WHERE id = (SELECT id FROM exports \
             WHERE status = 'processing' AND (lease_until IS NULL OR lease_until < $1) \
             ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING {EXPORT_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(now)
            .bind(lease_until)
            .try_map(|r: PgRow| export_from_row(&r))
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(row.map(decoded).transpose()?)
    }

    async fn finish_export(
        &self,
        id: ExportId,
        status: ExportStatus,
        data: serde_json::Value,
    ) -> StoreResult<()> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let user: Option<uuid::Uuid> = sqlx::query_scalar(
            "UPDATE exports SET status = $1, lease_until = NULL \
             WHERE id = $2 AND status = 'processing' RETURNING user_id",
        )
        .bind(status.as_str())
        .bind(id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(user) = user.filter(|_| status == ExportStatus::Ready) {
            append_event(&mut tx, user, "export.ready", &data).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn purge_exports(&self, now: Timestamp) -> StoreResult<u64> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("DELETE FROM exports WHERE expires_at < $1 RETURNING id")
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
        for id in &ids {
            queue_blob_deletion(&mut *tx, &export_blob_key(ExportId::from_uuid(*id))).await?;
        }
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    async fn comments_of_author(
        &self,
        author: UserId,
        after: Option<(PostId, CommentId)>,
        limit: u32,
    ) -> StoreResult<Vec<Comment>> {
        let (post, comment) = after
            .map(|(p, c)| (*p.as_uuid(), *c.as_uuid()))
            .unwrap_or((uuid::Uuid::nil(), uuid::Uuid::nil()));
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id \
             WHERE c.author_id = $1 AND (c.post_id, c.id) > ($2, $3) \
             ORDER BY c.post_id, c.id LIMIT $4"
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(author.as_uuid())
            .bind(post)
            .bind(comment)
            .bind(i64::from(limit))
            .try_map(|r: PgRow| comment_from_row(&r))
            .fetch_all(&mut *self.conn().await?)
            .await?)
    }
}
