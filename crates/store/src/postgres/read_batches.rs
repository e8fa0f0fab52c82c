//! Coalesced reads on PostgreSQL (`batches`): the single posts and the feed
//! pages asked for while earlier ones are out are read by one statement.
//! Each request gets exactly what its own statement would have returned; a
//! request alone is the same one statement as before.

use std::collections::HashMap;

use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use super::batches::{Batcher, Waiting, fail_all};
use super::pool::{self, Pool};
use super::rows::{POST_COLUMNS, post_from_row};
use domain::{FeedCursor, Post, PostId, Timestamp};

/// Read batches answered at once, per kind: three kept both cores busier
/// than two on deep pages at 100k posts (8,343 against 7,384 pages/s in one
/// run; four: 7,709), whose replies are large enough (~28 kB a page) that
/// decoding one batch overlaps the next one's statement.
const READS_AT_ONCE: usize = 3;

/// The most requests one read answers: a batch of single posts reads that
/// many rows, a batch of pages that many index ranges.
const MOST_PER_READ: usize = 64;

pub type PostReader = Batcher<PostId, Option<Post>>;

pub fn post_reader(pool: Pool) -> PostReader {
    Batcher::start(
        "post",
        READS_AT_ONCE,
        MOST_PER_READ,
        pool,
        move |batch, pool| async move { read_posts(batch, &pool).await },
    )
}

async fn read_posts(batch: Vec<Waiting<PostId, Option<Post>>>, pool: &Pool) {
    let ids: Vec<uuid::Uuid> = batch.iter().map(|w| *w.input.as_uuid()).collect();
    let read = async {
        let sql = format!(
            "SELECT {POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ANY($1)"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .try_map(|r: PgRow| post_from_row(&r))
            .fetch_all(&mut *pool::get(pool).await?)
            .await
    };
    match read.await {
        Ok(posts) => {
            let found: HashMap<PostId, Post> = posts.into_iter().map(|p| (p.id, p)).collect();
            for waiting in batch {
                let post = found.get(&waiting.input).cloned();
                waiting.answer(Ok(post));
            }
        }
        Err(e) => fail_all(batch, e),
    }
}

/// A feed page as asked for: posts after `after` in feed order.
pub struct PageAsk {
    pub after: Option<FeedCursor>,
    pub limit: u32,
    pub now: Timestamp,
}

/// A feed row: id, count and author, and the rendering (`None` when stored
/// by another renderer).
pub struct FeedRow {
    pub id: uuid::Uuid,
    pub comment_count: i64,
    pub author: uuid::Uuid,
    pub rendering: Option<String>,
}

pub type PageReader = Batcher<PageAsk, Vec<FeedRow>>;

pub fn page_reader(pool: Pool, rendered_version: i64) -> PageReader {
    Batcher::start(
        "feed_page",
        READS_AT_ONCE,
        MOST_PER_READ,
        pool,
        move |batch, pool| async move { read_pages(batch, &pool, rendered_version).await },
    )
}

async fn read_pages(
    batch: Vec<Waiting<PageAsk, Vec<FeedRow>>>,
    pool: &Pool,
    rendered_version: i64,
) {
    let from = |ask: &PageAsk| match ask.after {
        Some(c) => (c.comment_count, *c.post_id.as_uuid()),
        None => (i64::MAX, uuid::Uuid::max()),
    };
    // Each page is one backward range on posts_feed (comment_count, id), as
    // a page alone reads it, its rows tagged with the page's place. Every
    // column it reads is in the index, renderings included (migration
    // 0019): an index-only scan over a few neighbouring leaf pages. Only a
    // rendering too long for the index is read from the table, by the
    // subquery that runs for that row alone.
    // $1–$4 are the pages' places and sizes.
    let sql = "SELECT w.ord, p.id, p.comment_count, p.author_id, \
         CASE WHEN p.rendered_version = $5 THEN COALESCE(p.rendered, \
           (SELECT l.rendered_long FROM posts l WHERE l.id = p.id)) END \
         FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::bigint[]) \
           WITH ORDINALITY AS w(comment_count, id, now, page_size, ord) \
         CROSS JOIN LATERAL (SELECT p.id, p.comment_count, p.author_id, p.rendered_version, \
             p.rendered \
           FROM posts p WHERE p.status = 'ready' \
             AND (p.comment_count, p.id) < (w.comment_count, w.id) \
             AND (p.expires_at IS NULL OR p.expires_at > w.now) \
           ORDER BY p.comment_count DESC, p.id DESC LIMIT w.page_size) p";
    let read = async {
        sqlx::query(sql)
            .bind(batch.iter().map(|w| from(&w.input).0).collect::<Vec<_>>())
            .bind(batch.iter().map(|w| from(&w.input).1).collect::<Vec<_>>())
            .bind(batch.iter().map(|w| w.input.now).collect::<Vec<_>>())
            .bind(
                batch
                    .iter()
                    .map(|w| i64::from(w.input.limit))
                    .collect::<Vec<_>>(),
            )
            .bind(rendered_version)
            .try_map(|r: PgRow| {
                Ok((
                    r.try_get::<i64, _>(0)?,
                    FeedRow {
                        id: r.try_get(1)?,
                        comment_count: r.try_get(2)?,
                        author: r.try_get(3)?,
                        rendering: r.try_get(4)?,
                    },
                ))
            })
            .fetch_all(&mut *pool::get(pool).await?)
            .await
    };
    match read.await {
        Ok(rows) => {
            let mut pages: Vec<Vec<FeedRow>> = batch.iter().map(|_| Vec::new()).collect();
            for (ord, row) in rows {
                pages[ord as usize - 1].push(row);
            }
            for (waiting, mut page) in batch.into_iter().zip(pages) {
                // In feed order whatever order the join returned them in.
                page.sort_by_key(|row| std::cmp::Reverse((row.comment_count, row.id)));
                waiting.answer(Ok(page));
            }
        }
        Err(e) => fail_all(batch, e),
    }
}
