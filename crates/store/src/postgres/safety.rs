//! Reports and the moderation audit log on PostgreSQL.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::PgStore;
use super::rows::{COMMENT_COLUMNS, append_event, comment_from_row, user_from_row};
use crate::{
    BlockLists, Filed, NewReport, ReportGroup, Resolution, SafetyStore, StoreResult, StoredAudit,
    StoredGroup, StoredReport,
};
use domain::safety::{AuditEntry, Report, ReportStatus, TargetSnapshot};
use domain::{AuditId, Comment, CommentId, ReportId, Timestamp, User, UserId};

/// Report columns for alias `r`, read by `stored_report`.
const REPORT_COLUMNS: &str =
    "r.id, r.target_type, r.target_id, r.reason, r.note, r.status, r.created_at";

fn stored_report(r: &PgRow) -> sqlx::Result<StoredReport> {
    Ok(StoredReport {
        id: r.try_get("id")?,
        target_type: r.try_get("target_type")?,
        target_id: r.try_get("target_id")?,
        reason: r.try_get("reason")?,
        note: r.try_get("note")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
    })
}

#[async_trait]
impl SafetyStore for PgStore {
    async fn comment(&self, id: CommentId) -> StoreResult<Option<Comment>> {
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id WHERE c.id = $1"
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_uuid())
            .try_map(|r: PgRow| comment_from_row(&r))
            .fetch_optional(&mut *self.conn().await?)
            .await?)
    }

    async fn file_report(&self, new: NewReport) -> StoreResult<Filed> {
        let snapshot = serde_json::to_string(&new.snapshot).map_err(anyhow::Error::from)?;
        let r = &new.report;
        let mut conn = self.conn().await?;
        // The partial unique index admits one open report per reporter and
        // target; a second filing finds the first.
        let inserted = sqlx::query(
            "INSERT INTO reports (id, reporter_id, target_type, target_id, reason, note, snapshot, \
             status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8) \
             ON CONFLICT (reporter_id, target_type, target_id) WHERE status = 'open' DO NOTHING",
        )
        .bind(r.id.as_uuid())
        .bind(new.reporter.as_uuid())
        .bind(r.target.kind.as_str())
        .bind(r.target.id)
        .bind(r.reason.as_str())
        .bind(r.note.as_str())
        .bind(snapshot)
        .bind(r.created_at)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Filed::New(new.report));
        }
        let sql = format!(
            "SELECT {REPORT_COLUMNS} FROM reports r WHERE r.reporter_id = $1 AND r.target_type = $2 \
             AND r.target_id = $3 AND r.status = 'open'"
        );
        let existing = sqlx::query(AssertSqlSafe(sql))
            .bind(new.reporter.as_uuid())
            .bind(r.target.kind.as_str())
            .bind(r.target.id)
            .try_map(|r: PgRow| stored_report(&r))
            .fetch_one(&mut *conn)
            .await?;
        Ok(Filed::Existing(existing.decode()?))
    }

    async fn report(&self, id: ReportId) -> StoreResult<Option<(Report, TargetSnapshot)>> {
        let sql = format!("SELECT {REPORT_COLUMNS}, r.snapshot FROM reports r WHERE r.id = $1");
        let found = sqlx::query(AssertSqlSafe(sql))
            .bind(id.as_uuid())
            .try_map(|r: PgRow| Ok((stored_report(&r)?, r.try_get("snapshot")?)))
            .fetch_optional(&mut *self.conn().await?)
            .await?;
        Ok(found.map(crate::decode_report_with_snapshot).transpose()?)
    }

    async fn report_groups(
        &self,
        status: ReportStatus,
        after: Option<ReportId>,
        limit: u32,
    ) -> StoreResult<Vec<ReportGroup>> {
        // A group is a target's reports of the status, named and ordered by
        // its oldest report (UUIDv7 ids sort by time; PostgreSQL 15 has no
        // min(uuid), hence the ordered array).
        let sql = format!(
            "SELECT {REPORT_COLUMNS}, r.snapshot, g.n, g.reasons, g.last FROM \
             (SELECT (array_agg(id ORDER BY id))[1] AS first, count(*) AS n, \
              array_agg(DISTINCT reason) AS reasons, max(created_at) AS last \
              FROM reports WHERE status = $1 GROUP BY target_type, target_id) g \
             JOIN reports r ON r.id = g.first WHERE g.first > $2 ORDER BY g.first LIMIT $3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(status.as_str())
            .bind(after.map(|a| *a.as_uuid()).unwrap_or(uuid::Uuid::nil()))
            .bind(i64::from(limit))
            .try_map(|r: PgRow| {
                Ok(StoredGroup {
                    first: stored_report(&r)?,
                    snapshot: r.try_get("snapshot")?,
                    count: r.try_get("n")?,
                    reasons: r.try_get("reasons")?,
                    last: r.try_get("last")?,
                })
            })
            .fetch_all(&mut *self.conn().await?)
            .await?;
        Ok(rows
            .into_iter()
            .map(StoredGroup::decode)
            .collect::<anyhow::Result<_>>()?)
    }

    async fn resolve_reports(&self, resolution: Resolution) -> StoreResult<u64> {
        let target =
            serde_json::to_string(&resolution.entry.target).map_err(anyhow::Error::from)?;
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let closed = sqlx::query(
            "UPDATE reports SET status = 'resolved', resolution = $1, resolved_at = $2 \
             WHERE target_type = $3 AND target_id = $4 AND status = 'open'",
        )
        .bind(resolution.action.as_str())
        .bind(resolution.entry.created_at)
        .bind(resolution.target.kind.as_str())
        .bind(resolution.target.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        insert_audit(&mut tx, &resolution.entry, &target).await?;
        if let Some((user, kind, data)) = &resolution.notify {
            append_event(&mut tx, *user.as_uuid(), kind, data).await?;
        }
        if let Some(user) = resolution.suspend {
            suspend(&mut tx, user, resolution.entry.created_at).await?;
        }
        tx.commit().await?;
        Ok(closed)
    }

    async fn record_audit(&self, entry: AuditEntry) -> StoreResult<()> {
        let target = serde_json::to_string(&entry.target).map_err(anyhow::Error::from)?;
        insert_audit(&mut *self.conn().await?, &entry, &target).await?;
        Ok(())
    }

    async fn reinstate(&self, user: UserId, entry: AuditEntry) -> StoreResult<bool> {
        let target = serde_json::to_string(&entry.target).map_err(anyhow::Error::from)?;
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if !lift_suspension(&mut tx, user).await? {
            return Ok(false);
        }
        insert_audit(&mut tx, &entry, &target).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn block(&self, blocker: UserId, blocked: UserId, at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO blocks (id, blocker_id, blocked_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (blocker_id, blocked_id) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(blocker.as_uuid())
        .bind(blocked.as_uuid())
        .bind(at)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> StoreResult<()> {
        sqlx::query("DELETE FROM blocks WHERE blocker_id = $1 AND blocked_id = $2")
            .bind(blocker.as_uuid())
            .bind(blocked.as_uuid())
            .execute(&mut *self.conn().await?)
            .await?;
        Ok(())
    }

    async fn blocked_users(&self, blocker: UserId) -> StoreResult<Vec<User>> {
        Ok(sqlx::query(
            "SELECT u.id, u.username, u.created_at FROM blocks b JOIN users u ON u.id = b.blocked_id \
             WHERE b.blocker_id = $1 ORDER BY b.id DESC",
        )
        .bind(blocker.as_uuid())
        .try_map(|r: PgRow| user_from_row(&r, "id", "created_at"))
        .fetch_all(&mut *self.conn().await?)
        .await?)
    }

    async fn block_lists(&self, user: UserId) -> StoreResult<BlockLists> {
        let rows: Vec<(uuid::Uuid, bool)> = sqlx::query_as(
            "SELECT blocked_id, true FROM blocks WHERE blocker_id = $1 \
             UNION ALL SELECT blocker_id, false FROM blocks WHERE blocked_id = $1",
        )
        .bind(user.as_uuid())
        .fetch_all(&mut *self.conn().await?)
        .await?;
        let mut lists = BlockLists::default();
        for (id, blocks) in rows {
            let id = UserId::from_uuid(id);
            if blocks {
                lists.blocked.push(id);
            } else {
                lists.blocked_by.push(id);
            }
        }
        Ok(lists)
    }

    async fn ban_image(&self, sha256: [u8; 32], at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO banned_images (sha256, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(sha256.as_slice())
        .bind(at)
        .execute(&mut *self.conn().await?)
        .await?;
        Ok(())
    }

    async fn image_banned(&self, sha256: [u8; 32]) -> StoreResult<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM banned_images WHERE sha256 = $1")
                .bind(sha256.as_slice())
                .fetch_optional(&mut *self.conn().await?)
                .await?;
        Ok(found.is_some())
    }

    async fn audit_log(&self, before: Option<AuditId>, limit: u32) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, moderator, action, target, note, created_at FROM moderation_audit \
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.map(|b| *b.as_uuid()).unwrap_or(uuid::Uuid::max()))
        .bind(i64::from(limit))
        .try_map(|r: PgRow| {
            Ok(StoredAudit {
                id: r.try_get("id")?,
                moderator: r.try_get("moderator")?,
                action: r.try_get("action")?,
                target: r.try_get("target")?,
                note: r.try_get("note")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(rows
            .into_iter()
            .map(StoredAudit::decode)
            .collect::<anyhow::Result<_>>()?)
    }
}

async fn insert_audit(
    conn: &mut sqlx::PgConnection,
    entry: &AuditEntry,
    target: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO moderation_audit (id, moderator, action, target, note, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(entry.id.as_uuid())
    .bind(&entry.moderator)
    .bind(&entry.action)
    .bind(target)
    .bind(&entry.note)
    .bind(entry.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Suspends the live account `user` from `at` and deletes its sessions.
async fn suspend(tx: &mut sqlx::PgConnection, user: UserId, at: Timestamp) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE users SET suspended_at = $1 \
         WHERE id = $2 AND deleted_at IS NULL AND suspended_at IS NULL",
    )
    .bind(at)
    .bind(user.as_uuid())
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user.as_uuid())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Lifts the suspension of `user`; whether it was suspended.
async fn lift_suspension(tx: &mut sqlx::PgConnection, user: UserId) -> sqlx::Result<bool> {
    let lifted = sqlx::query(
        "UPDATE users SET suspended_at = NULL WHERE id = $1 AND suspended_at IS NOT NULL",
    )
    .bind(user.as_uuid())
    .execute(&mut *tx)
    .await?;
    Ok(lifted.rows_affected() > 0)
}
