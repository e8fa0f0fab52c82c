//! Comments on PostgreSQL, under the post's row lock so counts and the
//! newest comments stay exact.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::{
    COMMENT_COLUMNS, append_event, comment_from_row, lock_post, newest_comments, save_comments,
};
use crate::{CommentDeletion, CommentStore, CreatedComment, KeyAnswer, StoreResult};
use domain::rendering::comment_event;
use domain::{
    AcceptedComment, Comment, CommentId, IdCursor, NewComment, PostId, Timestamp, User, UserId,
};

#[async_trait]
impl CommentStore for PgStore {
    async fn create_comment(
        &self,
        new: NewComment,
        answer: Option<KeyAnswer<Comment>>,
    ) -> StoreResult<Option<CreatedComment>> {
        let (post_id, author, body, now) = (new.post_id, new.author, new.body, new.at);
        let mut tx = self.pool.begin().await?;
        // Under the row lock the post's newest comments are exact, so they are
        // updated here rather than read again; a post being deleted gets none.
        let Some(mut post) = lock_post(&mut tx, post_id).await? else {
            return Ok(None);
        };
        let Some(AcceptedComment { comment, notify }) = post.accept_comment(author, body, now)
        else {
            return Ok(None);
        };
        sqlx::query("INSERT INTO comments (id, post_id, author_id, body, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(comment.id.as_uuid())
            .bind(post_id.as_uuid())
            .bind(comment.author.id.as_uuid())
            .bind(comment.body.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        save_comments(&mut tx, &post, self.render).await?;
        if let Some(user) = notify {
            append_event(
                &mut tx,
                *user.as_uuid(),
                "comment.created",
                &comment_event(&comment),
            )
            .await?;
        }
        if let Some(answer) = answer {
            super::idempotency::record_answer(
                &mut tx,
                &answer.scope_key,
                &(answer.render)(&comment),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(CreatedComment {
            comment,
            post_comment_count: post.comment_count,
        }))
    }

    async fn comments(
        &self,
        post_id: PostId,
        after: Option<IdCursor>,
        limit: u32,
    ) -> StoreResult<Vec<Comment>> {
        let before = after
            .map(|c| uuid::Uuid::from_bytes(c.0))
            .unwrap_or(uuid::Uuid::max());
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id \
             WHERE c.post_id = $1 AND c.id < $2 ORDER BY c.id DESC LIMIT $3"
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(post_id.as_uuid())
            .bind(before)
            .bind(i64::from(limit))
            .try_map(|r: PgRow| comment_from_row(&r))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn delete_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: &User,
        now: Timestamp,
    ) -> StoreResult<CommentDeletion> {
        let mut tx = self.pool.begin().await?;
        let Some(mut post) = lock_post(&mut tx, post_id)
            .await?
            .filter(|p| p.visible_to(Some(by), now))
        else {
            return Ok(CommentDeletion::PostNotFound);
        };
        let author: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT author_id FROM comments WHERE id = $1 AND post_id = $2")
                .bind(comment_id.as_uuid())
                .bind(post_id.as_uuid())
                .fetch_optional(&mut *tx)
                .await?;
        let decision = CommentDeletion::decide(author.map(UserId::from_uuid), by.id);
        if decision != CommentDeletion::Deleted {
            return Ok(decision);
        }
        sqlx::query("DELETE FROM comments WHERE id = $1")
            .bind(comment_id.as_uuid())
            .execute(&mut *tx)
            .await?;
        if post.remove_comment(comment_id) {
            post.last_comments = newest_comments(&mut tx, post_id).await?;
        }
        save_comments(&mut tx, &post, self.render).await?;
        tx.commit().await?;
        Ok(decision)
    }
}
