//! Comments on PostgreSQL, under the post's row lock so counts and the
//! newest comments stay exact.

use async_trait::async_trait;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;

use super::PgStore;
use super::rows::{
    COMMENT_COLUMNS, CommentWrite, PostForWrite, comment_from_row, lock_post_for_write,
    newest_comments, read_post_for_write, write_comment_removal,
};
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
        // First without a lock: read the post, apply the rule, write everything
        // in one statement that applies only if the post's row is still as
        // read. Two round trips and no transaction block. If another writer
        // changed the post in between, once more under the post's row lock,
        // which cannot lose: every comment writer of a post queues there.
        let mut conn = self.conn().await?;
        let post_id = new.post_id;
        let Some((mut post, read_at, _)) = read_post_for_write(&mut *conn, post_id, None).await?
        else {
            return Ok(Err(CommentRefusal::NoPost));
        };
        let accepted = match post.accept_comment(new) {
            Ok(accepted) => accepted,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let answer = answer.map(|a| (a.scope_key, (a.render)(&accepted.comment)));
        let write = CommentWrite {
            comment: &accepted.comment,
            answer: answer.as_ref(),
            render: self.render,
        };
        if write
            .run(&mut *conn, &post, read_at, accepted.notify)
            .await?
        {
            return Ok(Ok(CreatedComment {
                comment: accepted.comment,
                post_comment_count: post.comment_count,
            }));
        }
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let Some((mut post, read_at, _)) = lock_post_for_write(&mut tx, post_id, None).await?
        else {
            return Ok(Err(CommentRefusal::NoPost));
        };
        let Some(AcceptedComment { notify, .. }) =
            post.accept_made_comment(accepted.comment.clone())
        else {
            return Ok(Err(CommentRefusal::NoPost));
        };
        if !write.run(&mut *tx, &post, read_at, notify).await? {
            return Err(changed_under_lock());
        }
        tx.commit().await?;
        Ok(Ok(CreatedComment {
            comment: accepted.comment,
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
            .fetch_all(&mut *self.conn().await?)
            .await?)
    }

    async fn newest_comments_of(
        &self,
        posts: &[PostId],
        per_post: u32,
    ) -> StoreResult<Vec<(PostId, Vec<Comment>)>> {
        let ids: Vec<uuid::Uuid> = posts.iter().map(|p| *p.as_uuid()).collect();
        // One statement for all the posts: each one's newest, walking comments_by_post.
        let sql = format!(
            "SELECT {COMMENT_COLUMNS} FROM unnest($1::uuid[]) AS wanted(post_id) \
             CROSS JOIN LATERAL (SELECT * FROM comments x WHERE x.post_id = wanted.post_id \
             ORDER BY x.id DESC LIMIT $2) c JOIN users u ON u.id = c.author_id \
             ORDER BY c.post_id, c.id DESC"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(i64::from(per_post))
            .try_map(|r: PgRow| comment_from_row(&r))
            .fetch_all(&mut *self.conn().await?)
            .await?;
        let mut found: Vec<(PostId, Vec<Comment>)> = Vec::new();
        for comment in rows {
            match found.last_mut() {
                Some((post, comments)) if *post == comment.post_id => comments.push(comment),
                _ => found.push((comment.post_id, vec![comment])),
            }
        }
        Ok(found)
    }

    async fn delete_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: &Remover,
        now: Timestamp,
    ) -> StoreResult<CommentDeletion> {
        // Optimistic first, as `create_comment`; then under the row lock.
        let mut conn = self.conn().await?;
        let read = read_post_for_write(&mut *conn, post_id, Some(comment_id)).await?;
        match self
            .remove_comment(&mut conn, read, comment_id, by, now)
            .await?
        {
            Some(decision) => Ok(decision),
            None => {
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
    }
}

impl PgStore {
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
            post.last_comments = newest_comments(&mut *conn, post.id, comment_id).await?;
        }
        let written =
            write_comment_removal(&mut *conn, &post, read_at, comment_id, self.render).await?;
        Ok(written.then_some(decision))
    }
}

/// A write under the post's row lock found the row changed: it cannot
/// happen (taking the lock does not rewrite the row, and no one else can),
/// so it is a fault to report, never a write to acknowledge.
fn changed_under_lock() -> StoreError {
    StoreError::Backend(anyhow::anyhow!(
        "a post's row changed while its writer held the row lock"
    ))
}
