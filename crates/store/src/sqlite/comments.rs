//! Comments on SQLite; the single writer keeps counts and the newest
//! comments exact.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::{
    COMMENT_COLUMNS, append_event, comment_from_row, load_post, ms, newest_comments, save_comments,
    uuid_col,
};
use crate::{CommentDeletion, CommentStore, CreatedComment, KeyAnswer, StoreResult};
use domain::rendering::comment_event;
use domain::{
    AcceptedComment, Comment, CommentId, CommentRefusal, IdCursor, NewComment, PostId, Remover,
    Timestamp, UserId,
};

#[async_trait]
impl CommentStore for SqliteStore {
    async fn create_comment(
        &self,
        new: NewComment,
        answer: Option<KeyAnswer<Comment>>,
    ) -> StoreResult<Result<CreatedComment, CommentRefusal>> {
        let (post_id, now) = (new.post_id, new.at);
        let render = self.render;
        self.write(move |tx| {
            // The post as this transaction sees it: the single writer makes its
            // newest comments exact, so they are updated here, not read again.
            let Some(mut post) = load_post(tx, post_id)? else {
                return Ok(Err(CommentRefusal::NoPost));
            };
            let AcceptedComment { comment, notify } = match post.accept_comment(new) {
                Ok(accepted) => accepted,
                Err(refusal) => return Ok(Err(refusal)),
            };
            tx.prepare_cached(
                "INSERT INTO comments (id, post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                comment.id.as_bytes(),
                post_id.as_bytes(),
                comment.author.id.as_bytes(),
                comment.body.as_str(),
                ms(now),
            ])?;
            save_comments(tx, &post, render)?;
            if let Some(user) = notify {
                append_event(tx, user.as_bytes(), "comment.created", &comment_event(&comment))?;
            }
            if let Some(answer) = answer {
                super::idempotency::record_answer(tx, &answer.scope_key, &(answer.render)(&comment))?;
            }
            Ok(Ok((
                CreatedComment {
                    comment,
                    post_comment_count: post.comment_count,
                },
                notify,
            )))
        })
        .await
        .map(|created| {
            created.map(|(created, notified)| {
                if let Some(user) = notified {
                    self.event_wakers.wake(user);
                }
                created
            })
        })
    }

    async fn comments(
        &self,
        post_id: PostId,
        after: Option<IdCursor>,
        limit: u32,
    ) -> StoreResult<Vec<Comment>> {
        let before = after.map(|c| c.0).unwrap_or([0xFF; 16]);
        self.read(move |conn| Ok(comments_before(conn, post_id, &before, limit)?))
            .await
    }

    async fn newest_comments_of(
        &self,
        posts: &[PostId],
        per_post: u32,
    ) -> StoreResult<Vec<(PostId, Vec<Comment>)>> {
        let posts = posts.to_vec();
        self.read(move |conn| Ok(read_newest_comments(conn, &posts, per_post)?))
            .await
    }

    async fn delete_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: &Remover,
        now: Timestamp,
    ) -> StoreResult<CommentDeletion> {
        let by = by.clone();
        let render = self.render;
        self.write(move |tx| {
            let Some(mut post) = load_post(tx, post_id)?.filter(|p| by.reaches(p, now)) else {
                return Ok(CommentDeletion::PostNotFound);
            };
            let author = tx
                .prepare_cached("SELECT author_id FROM comments WHERE id = ?1 AND post_id = ?2")?
                .query_row(params![comment_id.as_bytes(), post_id.as_bytes()], |r| {
                    uuid_col(r, 0, UserId::from_slice)
                })
                .optional()?;
            let decision = CommentDeletion::decide(author, &by);
            if decision != CommentDeletion::Deleted {
                return Ok(decision);
            }
            tx.prepare_cached("DELETE FROM comments WHERE id = ?1")?
                .execute([comment_id.as_bytes()])?;
            if post.remove_comment(comment_id) {
                post.last_comments = newest_comments(tx, post_id)?;
            }
            save_comments(tx, &post, render)?;
            Ok(decision)
        })
        .await
    }
}

/// The newest `per_post` comments of each post, newest first (posts without
/// comments left out).
pub(super) fn read_newest_comments(
    conn: &rusqlite::Connection,
    posts: &[PostId],
    per_post: u32,
) -> rusqlite::Result<Vec<(PostId, Vec<Comment>)>> {
    // The largest possible id stands in for "no bound", as in `comments`.
    let before = CommentId::from_slice(&[0xFF; 16]).expect("16 bytes");
    let asks: Vec<(PostId, crate::OlderComments)> = posts
        .iter()
        .map(|p| {
            (
                *p,
                crate::OlderComments {
                    before,
                    limit: per_post,
                },
            )
        })
        .collect();
    read_older_comments(conn, &asks)
}

/// Up to `limit` of the post's comments older than `before`, newest first.
fn comments_before(
    conn: &rusqlite::Connection,
    post_id: PostId,
    before: &[u8; 16],
    limit: u32,
) -> rusqlite::Result<Vec<Comment>> {
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id \
         WHERE c.post_id = ?1 AND c.id < ?2 ORDER BY c.id DESC LIMIT ?3"
    );
    conn.prepare_cached(&sql)?
        .query_map(
            params![post_id.as_bytes(), before.as_slice(), limit],
            comment_from_row,
        )?
        .collect()
}

/// The comments each ask wants, per post (those with none left out).
pub(super) fn read_older_comments(
    conn: &rusqlite::Connection,
    asks: &[(PostId, crate::OlderComments)],
) -> rusqlite::Result<Vec<(PostId, Vec<Comment>)>> {
    let mut found = Vec::with_capacity(asks.len());
    for (post, ask) in asks {
        let comments = comments_before(conn, *post, ask.before.as_bytes(), ask.limit)?;
        if !comments.is_empty() {
            found.push((*post, comments));
        }
    }
    Ok(found)
}
