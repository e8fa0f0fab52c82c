//! Posts and the feed on PostgreSQL.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;

use super::read_batches::PageAsk;
use super::rows::{
    POST_COLUMNS, load_post, lock_post, post_from_row, queue_blob_deletion, save_edit,
};
use super::uploads::queue_chunk_deletions;
use super::{JOBS_CHANNEL, PgStore};
use crate::{
    CommentsWanted, DeletedPost, FeedEntry, FeedWindow, FeedWithComments, KeyAnswer, OlderComments,
    PostStore, StoreError, StoreResult,
};
use domain::{
    EditRefusal, EditRequest, FeedCursor, IdCursor, NewPost, Post, PostId, Timestamp, UploadId,
    UserId, derived_blob_key,
};

#[async_trait]
impl PostStore for PgStore {
    async fn create_post(
        &self,
        p: &NewPost,
        from_upload: Option<UploadId>,
        answer: Option<KeyAnswer<Post>>,
    ) -> StoreResult<Post> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        if let Some(upload) = from_upload {
            // Consume the finished upload exactly once, in this transaction.
            queue_chunk_deletions(&mut tx, upload).await?;
            let consumed = sqlx::query(
                "DELETE FROM uploads WHERE id = $1 AND owner_id = $2 AND upload_offset = length",
            )
            .bind(upload.as_uuid())
            .bind(p.author.id.as_uuid())
            .execute(&mut *tx)
            .await?;
            if consumed.rows_affected() == 0 {
                return Err(StoreError::UploadUnavailable);
            }
        }
        let post = p.as_post();
        sqlx::query(
            "INSERT INTO posts (id, author_id, caption, status, filter, dither_levels, original_key, \
             original_format, created_at, updated_at, expires_at, version, rendered, rendered_version, alt_text) \
             VALUES ($1, $2, $3, 'processing', $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, $13)",
        )
        .bind(p.id.as_uuid())
        .bind(p.author.id.as_uuid())
        .bind(p.caption.as_str())
        .bind(p.filter.name())
        .bind(p.filter.levels().map(i16::from))
        .bind(&p.original_key)
        .bind(&p.original_format)
        .bind(p.created_at)
        .bind(p.expires_at)
        .bind(post.version)
        .bind((self.render.render)(&post))
        .bind(self.render.version)
        .bind(p.alt_text.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO jobs (id, post_id, run_at, created_at) VALUES ($1, $2, $3, $3)")
            .bind(uuid::Uuid::now_v7())
            .bind(p.id.as_uuid())
            .bind(p.created_at)
            .execute(&mut *tx)
            .await?;
        // Delivered to every listening worker when (and only if) the transaction commits.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(JOBS_CHANNEL)
            .execute(&mut *tx)
            .await?;
        if let Some(answer) = answer {
            super::idempotency::record_answer(&mut tx, &answer.scope_key, &(answer.render)(&post))
                .await?;
        }
        tx.commit().await?;
        Ok(post)
    }

    async fn post(&self, id: PostId) -> StoreResult<Option<Post>> {
        self.post_reads.submit(id).await
    }

    async fn feed(
        &self,
        after: Option<FeedCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<FeedEntry>> {
        let rows = self
            .page_reads
            .submit(PageAsk { after, limit, now })
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let id = PostId::from_uuid(row.id);
            let json = match row.rendering {
                Some(json) => json,
                // Stored by another renderer: rendered from its row.
                None => match load_post(&mut *self.conn().await?, id).await? {
                    Some(post) => (self.render.render)(&post),
                    None => continue, // deleted since the page was read
                },
            };
            entries.push(FeedEntry {
                id,
                author: UserId::from_uuid(row.author),
                comment_count: row.comment_count,
                json,
            });
        }
        Ok(entries)
    }

    async fn feed_with_comments(
        &self,
        window: FeedWindow,
        wanted: CommentsWanted,
    ) -> StoreResult<FeedWithComments> {
        // Two reads, the feed's answered with the batch of its kind that other
        // readers' requests make (read_batches.rs); a statement of both would
        // be a kind of its own, batched with nothing.
        let entries = self.feed(window.after, window.limit, window.now).await?;
        let asks: Vec<(PostId, OlderComments)> = entries
            .iter()
            .filter_map(|e| wanted(e).map(|ask| (e.id, ask)))
            .collect();
        let comments = if asks.is_empty() {
            Vec::new()
        } else {
            super::rows::older_comments(&mut *self.conn().await?, &asks).await?
        };
        Ok(FeedWithComments {
            entries,
            wanted: asks,
            comments,
        })
    }

    async fn posts_by_author(
        &self,
        author: UserId,
        after: Option<IdCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Post>> {
        let before = after
            .map(|c| uuid::Uuid::from_bytes(c.0))
            .unwrap_or(uuid::Uuid::max());
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id \
             WHERE p.author_id = $1 AND p.status = 'ready' AND p.id < $2 \
             AND (p.expires_at IS NULL OR p.expires_at > $3) ORDER BY p.id DESC LIMIT $4"
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(author.as_uuid())
            .bind(before)
            .bind(now)
            .bind(i64::from(limit))
            .try_map(|r: PgRow| post_from_row(&r))
            .fetch_all(&mut *self.conn().await?)
            .await?)
    }

    async fn edit_post(&self, request: EditRequest) -> StoreResult<Result<Post, EditRefusal>> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let Some(mut post) = lock_post(&mut tx, request.post).await? else {
            return Ok(Err(EditRefusal::NotFound));
        };
        if let Err(refusal) = post.apply_edit(&request) {
            return Ok(Err(refusal));
        }
        save_edit(&mut tx, &post, self.render).await?;
        tx.commit().await?;
        Ok(Ok(post))
    }

    async fn expired_posts(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<PostId>> {
        let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT id FROM posts WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *self.conn().await?)
        .await?;
        Ok(ids.into_iter().map(PostId::from_uuid).collect())
    }

    async fn delete_post(&self, id: PostId) -> StoreResult<Option<DeletedPost>> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // Comments and the job go with the post (ON DELETE CASCADE).
        let deleted: Option<(String, Option<String>)> =
            sqlx::query_as("DELETE FROM posts WHERE id = $1 RETURNING original_key, image_key")
                .bind(id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
        let Some((original, image)) = deleted else {
            return Ok(None);
        };
        let mut blob_keys = vec![original];
        blob_keys.extend(image.map(|k| derived_blob_key(&k)));
        for key in &blob_keys {
            queue_blob_deletion(&mut *tx, key).await?;
        }
        tx.commit().await?;
        Ok(Some(DeletedPost { blob_keys }))
    }
}
