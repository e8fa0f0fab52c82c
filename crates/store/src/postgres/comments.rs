//! Comments on PostgreSQL, under the post's row lock so counts and the
//! newest comments stay exact.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::comment_batches::{Batched, NewComments, RenderedAnswer};
use super::comment_deletions::{Decided, DeletionAsk};
use super::rows::{
    COMMENT_COLUMNS, PostForWrite, PostsWrite, comment_from_row, lock_post_for_write,
    newest_comments, write_comment_removals,
};
use crate::last_comments;
use crate::{CommentDeletion, CommentStore, CreatedComment, KeyAnswer, StoreError, StoreResult};
use domain::{
    AcceptedComment, Comment, CommentId, CommentRefusal, IdCursor, NewComment, PostId, Remover,
    Timestamp,
};

#[async_trait]
impl CommentStore for PgStore {
    async fn create_comment(
        &self,
        new: NewComment,
        answer: Option<KeyAnswer<Comment>>,
    ) -> StoreResult<Result<CreatedComment, CommentRefusal>> {
        // Optimistic and grouped with the comments arriving meanwhile
        // (`comment_batches`): two statements for all of them. A comment
        // whose post another writer changed in between is written once more
        // under the post's row lock, which cannot lose: every comment writer
        // of a post queues there.
        match self.comment_batches.submit((new, answer)).await? {
            Batched::Done(outcome) => Ok(outcome),
            Batched::PostChanged(comment, answer) => {
                self.create_comment_locked(comment, answer, false).await
            }
            Batched::WriteFailed(comment, answer) => {
                self.create_comment_locked(comment, answer, true).await
            }
        }
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
            .fetch_all(&mut *self.conn().await?)
            .await?)
    }

    async fn newest_comments_of(
        &self,
        posts: &[PostId],
        per_post: u32,
    ) -> StoreResult<Vec<(PostId, Vec<Comment>)>> {
        Ok(newest_comments(&mut *self.conn().await?, posts, per_post, &[]).await?)
    }

    async fn delete_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: &Remover,
        now: Timestamp,
    ) -> StoreResult<CommentDeletion> {
        // Optimistic and grouped, as `create_comment`; then under the row lock.
        let ask = DeletionAsk {
            post_id,
            comment_id,
            by: by.clone(),
            now,
        };
        if let Decided::Done(decision) = self.deletion_batches.submit(ask).await? {
            return Ok(decision);
        }
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let read = lock_post_for_write(&mut tx, post_id, Some(comment_id)).await?;
        let Some(decision) = self
            .remove_comment(&mut tx, read, comment_id, by, now)
            .await?
        else {
            return Err(changed_under_lock());
        };
        tx.commit().await?;
        Ok(decision)
    }
}

impl PgStore {
    /// Writes a comment the rule accepted, under its post's row lock,
    /// applying the rule again to the post as it now is; unless, after a
    /// failed batch write (`may_be_written`), it is there already.
    async fn create_comment_locked(
        &self,
        comment: Comment,
        answer: Option<RenderedAnswer>,
        may_be_written: bool,
    ) -> StoreResult<Result<CreatedComment, CommentRefusal>> {
        let mut conn = self.conn().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let Some((mut post, read_at, _)) =
            lock_post_for_write(&mut tx, comment.post_id, None).await?
        else {
            return Ok(Err(CommentRefusal::NoPost));
        };
        // Written already by a batch whose connection was lost after its
        // commit (its answer never came back): the post, read under the
        // lock, counts it. Only then is it looked for: a post another writer
        // changed is the contended path, and it pays no extra statement.
        if may_be_written && comment_exists(&mut tx, comment.id).await? {
            return Ok(Ok(CreatedComment {
                comment,
                post_comment_count: post.comment_count,
            }));
        }
        let Some(AcceptedComment { notify, .. }) = post.accept_made_comment(comment.clone()) else {
            return Ok(Err(CommentRefusal::NoPost));
        };
        let written = NewComments {
            posts: PostsWrite::new(vec![(&post, read_at)]),
            comments: vec![(&comment, notify, answer.as_ref())],
        }
        .write(&mut *tx, self.render)
        .await?;
        if written.is_empty() {
            return Err(changed_under_lock());
        }
        tx.commit().await?;
        Ok(Ok(CreatedComment {
            comment,
            post_comment_count: post.comment_count,
        }))
    }

    /// Decides and writes a comment's deletion on `read`, the post as read
    /// (with its row version and the comment's author). The write is
    /// conditioned on the row version: `None` says the post changed since the
    /// read.
    async fn remove_comment(
        &self,
        conn: &mut sqlx::PgConnection,
        read: Option<PostForWrite>,
        comment_id: CommentId,
        by: &Remover,
        now: Timestamp,
    ) -> StoreResult<Option<CommentDeletion>> {
        let Some((mut post, read_at, author)) = read.filter(|(p, ..)| by.reaches(p, now)) else {
            return Ok(Some(CommentDeletion::PostNotFound));
        };
        let decision = CommentDeletion::decide(author, by);
        if decision != CommentDeletion::Deleted {
            return Ok(Some(decision));
        }
        if post.remove_comment(comment_id) {
            let newest = newest_comments(
                &mut *conn,
                &[post.id],
                last_comments::LAST_COMMENTS,
                &[comment_id],
            )
            .await?;
            post.last_comments = newest
                .into_iter()
                .next()
                .map(|(_, c)| c)
                .unwrap_or_default();
        }
        let written = write_comment_removals(
            &mut *conn,
            &PostsWrite::new(vec![(&post, read_at)]),
            &[(post.id, comment_id)],
            self.render,
        )
        .await?;
        Ok((!written.is_empty()).then_some(decision))
    }
}

async fn comment_exists(conn: &mut sqlx::PgConnection, id: CommentId) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM comments WHERE id = $1)")
        .bind(id.as_uuid())
        .fetch_one(conn)
        .await
}

/// A write under the post's row lock found the row changed: it cannot
/// happen (taking the lock does not rewrite the row, and no one else can),
/// so it is a fault to report, never a write to acknowledge.
fn changed_under_lock() -> StoreError {
    StoreError::Backend(anyhow::anyhow!(
        "a post's row changed while its writer held the row lock"
    ))
}
