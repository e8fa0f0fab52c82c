//! Group commit for comment deletions on PostgreSQL (`batches`), as
//! `comment_batches` for creations: one statement reads the posts and the
//! comments' authors, the rule (`CommentDeletion::decide`,
//! `Post::remove_comment`) runs in Rust, one statement reads the newest
//! comments of the posts that lost one of theirs (only when some did), and
//! one statement writes every deletion, each post's only if its row is as
//! read. A post changed meanwhile hands its deletions back, to be decided
//! again under the post's row lock (`CommentStore::delete_comment`).

use std::collections::{HashMap, HashSet};

use sqlx::AssertSqlSafe;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::batches::{Batcher, Waiting, fail_all};
use super::pool::{self, Pool};
use super::rows::{
    POST_COLUMNS, PostsWrite, RowVersion, newest_comments, post_from_row, write_comment_removals,
};
use crate::{PostRenderer, last_comments};
use domain::{CommentDeletion, CommentId, Post, PostId, Remover, Timestamp, UserId};

/// As for creations (`comment_batches`).
const MOST_PER_BATCH: usize = 64;
const BATCHES_AT_ONCE: usize = 2;

/// A deletion as asked for.
pub struct DeletionAsk {
    pub post_id: PostId,
    pub comment_id: CommentId,
    pub by: Remover,
    pub now: Timestamp,
}

/// What a batch did with one deletion: decided (and, if `Deleted`, written),
/// or handed back because its post changed before the batch wrote.
pub enum Decided {
    Done(CommentDeletion),
    PostChanged,
}

pub type DeletionBatcher = Batcher<DeletionAsk, Decided>;

pub fn deletion_batcher(pool: Pool, render: PostRenderer) -> DeletionBatcher {
    Batcher::start(
        "comment_delete",
        BATCHES_AT_ONCE,
        MOST_PER_BATCH,
        pool,
        move |batch, pool| async move { run(batch, &pool, render).await },
    )
}

type Pending = Waiting<DeletionAsk, Decided>;

async fn run(batch: Vec<Pending>, pool: &Pool, render: PostRenderer) {
    let mut conn = match pool::get(pool).await {
        Ok(conn) => conn,
        Err(e) => return fail_all(batch, e),
    };
    let (mut posts, authors) = match read_for_deletions(&mut conn, &batch).await {
        Ok(read) => read,
        Err(e) => return fail_all(batch, e),
    };
    // The rule, in the order asked: a comment deleted earlier in the batch
    // is no longer there for a later ask.
    let mut decisions = Vec::with_capacity(batch.len());
    let mut removed: Vec<(PostId, CommentId)> = Vec::new();
    let mut refill: HashSet<PostId> = HashSet::new();
    for (waiting, author) in batch.iter().zip(&authors) {
        let ask = &waiting.input;
        let gone = removed.iter().any(|(_, c)| *c == ask.comment_id);
        let decision = match posts.get_mut(&ask.post_id) {
            Some((post, _)) if ask.by.reaches(post, ask.now) => {
                let decision = CommentDeletion::decide(author.filter(|_| !gone), &ask.by);
                if decision == CommentDeletion::Deleted {
                    if post.remove_comment(ask.comment_id) {
                        refill.insert(post.id);
                    }
                    removed.push((post.id, ask.comment_id));
                }
                decision
            }
            _ => CommentDeletion::PostNotFound,
        };
        decisions.push(decision);
    }
    let written = write(&mut conn, &mut posts, &removed, refill, render).await;
    let written = written.unwrap_or_else(|e| {
        super::pool::note_failure(&e);
        tracing::warn!(error = %e, "a comment deletion batch failed; deciding each alone");
        HashSet::new()
    });
    for (waiting, decision) in batch.into_iter().zip(decisions) {
        let post = waiting.input.post_id;
        // Decided without a write (no such post, not the author): as read.
        let outcome = if written.contains(&post) || !removed.iter().any(|(p, _)| *p == post) {
            Decided::Done(decision)
        } else {
            Decided::PostChanged
        };
        waiting.answer(Ok(outcome));
    }
}

/// Refills the newest comments of the posts in `refill`, then writes every
/// deletion; returns the posts written.
async fn write(
    conn: &mut sqlx::PgConnection,
    posts: &mut HashMap<PostId, (Post, RowVersion)>,
    removed: &[(PostId, CommentId)],
    refill: HashSet<PostId>,
    render: PostRenderer,
) -> sqlx::Result<HashSet<PostId>> {
    if removed.is_empty() {
        return Ok(HashSet::new());
    }
    if !refill.is_empty() {
        let refill: Vec<PostId> = refill.into_iter().collect();
        let except: Vec<CommentId> = removed.iter().map(|(_, c)| *c).collect();
        for id in &refill {
            // A post whose remaining comments are all gone has none.
            if let Some((post, _)) = posts.get_mut(id) {
                post.last_comments.clear();
            }
        }
        let newest =
            newest_comments(&mut *conn, &refill, last_comments::LAST_COMMENTS, &except).await?;
        for (id, comments) in newest {
            if let Some((post, _)) = posts.get_mut(&id) {
                post.last_comments = comments;
            }
        }
    }
    let touched: HashSet<PostId> = removed.iter().map(|(p, _)| *p).collect();
    let changed = PostsWrite::new(
        posts
            .values()
            .filter(|(post, _)| touched.contains(&post.id))
            .map(|(post, at)| (post, *at))
            .collect(),
    );
    let written = write_comment_removals(&mut *conn, &changed, removed, render).await?;
    Ok(written.into_iter().collect())
}

/// The posts of every ask with their row versions, and each ask's comment's
/// author (`None`: no such comment on that post), in one statement.
async fn read_for_deletions(
    conn: &mut sqlx::PgConnection,
    batch: &[Pending],
) -> sqlx::Result<(HashMap<PostId, (Post, RowVersion)>, Vec<Option<UserId>>)> {
    let sql = format!(
        "SELECT w.ord, c.author_id AS comment_author, {POST_COLUMNS}, \
         p.xmin::text::bigint AS row_version \
         FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS w(post_id, comment_id, ord) \
         JOIN posts p ON p.id = w.post_id JOIN users u ON u.id = p.author_id \
         LEFT JOIN comments c ON c.id = w.comment_id AND c.post_id = w.post_id"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(
            batch
                .iter()
                .map(|w| *w.input.post_id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|w| *w.input.comment_id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .try_map(|r: PgRow| {
            Ok((
                r.try_get::<i64, _>("ord")?,
                r.try_get::<Option<uuid::Uuid>, _>("comment_author")?,
                post_from_row(&r)?,
                RowVersion::from_stored(r.try_get("row_version")?),
            ))
        })
        .fetch_all(conn)
        .await?;
    let mut posts = HashMap::new();
    let mut authors = vec![None; batch.len()];
    for (ord, author, post, at) in rows {
        authors[ord as usize - 1] = author.map(UserId::from_uuid);
        posts.entry(post.id).or_insert((post, at));
    }
    Ok((posts, authors))
}
