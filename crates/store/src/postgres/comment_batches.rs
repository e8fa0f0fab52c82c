//! Group commit for new comments on PostgreSQL (`batches`).
//!
//! One statement reads the posts of every comment in the batch, the rule
//! (`Post::accept_comment`) runs in Rust for each in turn, and one statement
//! writes them all in one transaction: the SQLite writer's group commit, done
//! for a database that other nodes write too. Each post's write still applies
//! only if its row is as read (`RowVersion`); the comments of a post another
//! writer changed meanwhile are handed back, to be written under the post's
//! row lock (`CommentStore::create_comment`). Nothing is acknowledged before
//! its batch commits.

use tokio::sync::oneshot;

use super::batches::{Batcher, Waiting, fail_all};
use super::pool::{self, Pool};
use super::rows::{EVENTS_CHANNEL, PostsWrite, posts_comments_cte, posts_for_write};
use crate::{CreatedComment, KeyAnswer, PostRenderer, StoreResult};
use domain::idempotency::StoredResponse;
use domain::rendering::comment_event;
use domain::{Comment, CommentRefusal, NewComment, PostId, UserId};

/// The most comments one statement writes. Enough that a burst of writers
/// from every connection goes in one or two batches; small enough that a
/// batch's arrays stay a few hundred kilobytes.
const MOST_PER_BATCH: usize = 64;

/// Batches written at once. Two, so that one batch's commit (its WAL flush)
/// overlaps the next one's statements; more would only add connections to a
/// 2-core database server.
const BATCHES_AT_ONCE: usize = 2;

/// A comment's answer and the key's scope it is recorded under.
pub type RenderedAnswer = (String, StoredResponse);

/// What a batch did with one comment.
pub enum Batched {
    /// Written, or refused by the rule.
    Done(Result<CreatedComment, CommentRefusal>),
    /// Accepted, but its post changed before the batch wrote: to be written
    /// again under the post's row lock, with the same comment and answer.
    PostChanged(Comment, Option<RenderedAnswer>),
    /// Accepted, but the batch's write failed: to be written again under the
    /// post's row lock, like `PostChanged`. A write whose connection was lost
    /// may have committed all the same, so that write looks for it first.
    WriteFailed(Comment, Option<RenderedAnswer>),
}

pub type CommentBatcher = Batcher<(NewComment, Option<KeyAnswer<Comment>>), Batched>;

pub fn comment_batcher(pool: Pool, render: PostRenderer) -> CommentBatcher {
    Batcher::start(
        "comment_create",
        BATCHES_AT_ONCE,
        MOST_PER_BATCH,
        pool,
        move |batch, pool| async move { run(batch, &pool, render).await },
    )
}

type Pending = Waiting<(NewComment, Option<KeyAnswer<Comment>>), Batched>;

/// One comment the rule accepted, waiting for its batch's write.
struct Accepted {
    comment: Comment,
    notify: Option<UserId>,
    answer: Option<RenderedAnswer>,
    post_comment_count: i64,
    reply: oneshot::Sender<StoreResult<Batched>>,
}

async fn run(batch: Vec<Pending>, pool: &Pool, render: PostRenderer) {
    let mut conn = match pool::get(pool).await {
        Ok(conn) => conn,
        Err(e) => return fail_all(batch, e),
    };
    let ids: Vec<PostId> = batch.iter().map(|w| w.input.0.post_id).collect();
    let mut posts = match posts_for_write(&mut conn, &ids, "").await {
        Ok(posts) => posts,
        Err(e) => return fail_all(batch, e),
    };
    let mut accepted = Vec::with_capacity(batch.len());
    for Waiting {
        input: (new, answer),
        reply,
    } in batch
    {
        // A send fails only if the asker has gone; the work is done either way.
        let Some((post, _)) = posts.get_mut(&new.post_id) else {
            let _ = reply.send(Ok(Batched::Done(Err(CommentRefusal::NoPost))));
            continue;
        };
        match post.accept_comment(new) {
            Ok(a) => accepted.push(Accepted {
                answer: answer.map(|k| (k.scope_key, (k.render)(&a.comment))),
                comment: a.comment,
                notify: a.notify,
                post_comment_count: post.comment_count,
                reply,
            }),
            Err(refusal) => {
                let _ = reply.send(Ok(Batched::Done(Err(refusal))));
            }
        }
    }
    if accepted.is_empty() {
        return;
    }
    posts.retain(|id, _| accepted.iter().any(|a| a.comment.post_id == *id));
    let written = NewComments {
        posts: PostsWrite::new(posts.values().map(|(post, at)| (post, *at)).collect()),
        comments: accepted
            .iter()
            .map(|a| (&a.comment, a.notify, a.answer.as_ref()))
            .collect(),
    }
    .write(&mut *conn, render)
    .await;
    // A write that failed is one statement, all or nothing: each comment is
    // tried again alone, so that one comment's fault (its author deleted
    // meanwhile, say) fails only that comment.
    let (written, failed) = match written {
        Ok(written) => (written, false),
        Err(e) => {
            super::pool::note_failure(&e);
            tracing::warn!(error = %e, comments = accepted.len(), "a comment batch failed; writing each alone");
            (Vec::new(), true)
        }
    };
    for a in accepted {
        let outcome = if written.contains(&a.comment.post_id) {
            Batched::Done(Ok(CreatedComment {
                comment: a.comment,
                post_comment_count: a.post_comment_count,
            }))
        } else if failed {
            Batched::WriteFailed(a.comment, a.answer)
        } else {
            Batched::PostChanged(a.comment, a.answer)
        };
        let _ = a.reply.send(Ok(outcome));
    }
}

/// One column of the comments' answers: `None` where a comment has no key.
fn per_answer<T>(
    comments: &[(&Comment, Option<UserId>, Option<&RenderedAnswer>)],
    f: impl Fn(&RenderedAnswer) -> T,
) -> Vec<Option<T>> {
    comments.iter().map(|(_, _, a)| a.map(&f)).collect()
}

/// New comments and what they change, written in one statement: each post's
/// count, newest comments, version and rendering as the rule left them, the
/// comments, the notifications of the posts' authors (counter, event, NOTIFY
/// on commit) and the Idempotency-Key answers. A post's row is written only
/// if it is as read, and its comments, events and answers only with it.
pub struct NewComments<'a> {
    /// Each post once, as it is with all of its new comments.
    pub posts: PostsWrite<'a>,
    /// In the order they were accepted: a user's events number in that order.
    pub comments: Vec<(&'a Comment, Option<UserId>, Option<&'a RenderedAnswer>)>,
}

impl NewComments<'_> {
    /// Returns the posts written.
    pub async fn write<'e>(
        &self,
        conn: impl sqlx::PgExecutor<'e>,
        render: PostRenderer,
    ) -> sqlx::Result<Vec<PostId>> {
        // Data-modifying CTEs all run, against one snapshot; each later one
        // reads the posts' RETURNING rows, so none writes for a post whose
        // row was not written. A user notified n times has the counter moved
        // by n and the events numbered in order below it. The event key is
        // `crate::event_key` (user id without dashes, seq to 20 digits),
        // made here because the seq is only known here; the statements test
        // compares the two.
        let comments = &self.comments;
        let query = sqlx::query_scalar(concat!(
            "WITH ",
            posts_comments_cte!(),
            ", new AS (SELECT n.* FROM unnest($8::uuid[], $9::uuid[], $10::uuid[], $11::text[], \
                 $12::timestamptz[], $13::uuid[], $14::text[], $15::text[], $16::int[], $17::text[], $18::bytea[]) \
                 WITH ORDINALITY AS n(id, post_id, author_id, body, created_at, recipient, event, \
                   scope_key, status, headers, answer, ord) \
               WHERE n.post_id IN (SELECT id FROM post)), \
             comment AS (INSERT INTO comments (id, post_id, author_id, body, created_at) \
               SELECT id, post_id, author_id, body, created_at FROM new), \
             seq AS (UPDATE users u SET event_seq = u.event_seq + r.n \
               FROM (SELECT recipient, count(*) AS n FROM new WHERE recipient IS NOT NULL \
                 GROUP BY recipient ORDER BY recipient) r \
               WHERE u.id = r.recipient RETURNING u.id, u.event_seq), \
             numbered AS (SELECT new.recipient, new.event, \
               seq.event_seq - count(*) OVER w + row_number() OVER (w ORDER BY new.ord) AS seq \
               FROM new JOIN seq ON seq.id = new.recipient WINDOW w AS (PARTITION BY new.recipient)), \
             event AS (INSERT INTO events (key, user_id, seq, kind, data, created_at) \
               SELECT replace(recipient::text, '-', '') || ':' || lpad(seq::text, 20, '0'), \
               recipient, seq, 'comment.created', event, now() FROM numbered), \
             answer AS (UPDATE idempotency_keys k SET state = 'done', status = new.status, \
               headers = new.headers, body = new.answer FROM new WHERE k.scope_key = new.scope_key) \
             SELECT id FROM post WHERE (SELECT count(pg_notify($19, id::text)) FROM seq) >= 0",
        ));
        let written: Vec<uuid::Uuid> = self
            .posts
            .bind(query, render)
            .bind(
                comments
                    .iter()
                    .map(|(c, ..)| *c.id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                comments
                    .iter()
                    .map(|(c, ..)| *c.post_id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                comments
                    .iter()
                    .map(|(c, ..)| *c.author.id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                comments
                    .iter()
                    .map(|(c, ..)| c.body.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                comments
                    .iter()
                    .map(|(c, ..)| c.created_at)
                    .collect::<Vec<_>>(),
            )
            .bind(
                comments
                    .iter()
                    .map(|(_, notify, _)| notify.map(|u| *u.as_uuid()))
                    .collect::<Vec<_>>(),
            )
            .bind(
                comments
                    .iter()
                    .map(|(c, notify, _)| notify.map(|_| comment_event(c).to_string()))
                    .collect::<Vec<_>>(),
            )
            .bind(per_answer(comments, |(key, _)| key.clone()))
            .bind(per_answer(comments, |(_, r)| i32::from(r.status)))
            .bind(per_answer(comments, |(_, r)| {
                crate::answers::headers_json(r)
            }))
            .bind(per_answer(comments, |(_, r)| r.body.clone()))
            .bind(EVENTS_CHANNEL)
            .fetch_all(conn)
            .await?;
        Ok(written.into_iter().map(PostId::from_uuid).collect())
    }
}
