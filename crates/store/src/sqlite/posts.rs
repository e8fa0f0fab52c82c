//! Posts and the feed on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use super::rows::{
    POST_COLUMNS, load_post, ms, post_from_row, queue_blob_deletion, save_edit, uuid_col,
};
use super::uploads::queue_chunk_deletions;
use crate::{
    CommentsWanted, DeletedPost, FeedEntry, FeedWindow, FeedWithComments, KeyAnswer, OlderComments,
    PostRenderer, PostStore, StoreError, StoreResult,
};
use domain::{
    EditRefusal, EditRequest, FeedCursor, IdCursor, NewPost, Post, PostId, Timestamp, UploadId,
    UserId, derived_blob_key,
};

// The feed's statements name their index: each is written as one walk of
// `posts_feed` in its own order, and that plan must not depend on statistics.
const FIRST_PAGE: &str = "WHERE p.status = 'ready' AND (p.expires_at IS NULL OR p.expires_at > ?1) \
     ORDER BY p.comment_count DESC, p.id DESC LIMIT ?2";
const SAME_COUNT: &str = "WHERE p.status = 'ready' AND p.comment_count = ?1 AND p.id < ?2 \
     AND (p.expires_at IS NULL OR p.expires_at > ?3) ORDER BY p.comment_count DESC, p.id DESC LIMIT ?4";
const LOWER_COUNTS: &str = "WHERE p.status = 'ready' AND p.comment_count < ?1 \
     AND (p.expires_at IS NULL OR p.expires_at > ?2) ORDER BY p.comment_count DESC, p.id DESC LIMIT ?3";

/// Ready, unexpired posts in feed order, after the window's cursor.
fn read_feed(
    conn: &rusqlite::Connection,
    window: FeedWindow,
    render: PostRenderer,
) -> rusqlite::Result<Vec<FeedEntry>> {
    let FeedWindow { after, limit, now } = window;
    let now = ms(now);
    let Some(c) = after else {
        return query_feed(conn, FIRST_PAGE, params![now, limit], render);
    };
    // A page after (count, id) is the rest of that count's posts, then the
    // lower counts: two index walks that each come out in feed order, so
    // neither needs a sort, and the second runs only when the first ends
    // short. (As one statement, SQLite can seek a row-value comparison on
    // its first column only, and a UNION ALL needs a sort to be ordered.)
    let mut posts = query_feed(
        conn,
        SAME_COUNT,
        params![c.comment_count, c.post_id.as_bytes(), now, limit],
        render,
    )?;
    let missing = limit.saturating_sub(posts.len() as u32);
    if missing > 0 {
        posts.extend(query_feed(
            conn,
            LOWER_COUNTS,
            params![c.comment_count, now, missing],
            render,
        )?);
    }
    Ok(posts)
}

/// Feed posts matching `filter` (a WHERE … LIMIT clause), walking `posts_feed`:
/// their stored renderings, or for those without one in `render`'s format,
/// renderings made from their rows now.
fn query_feed(
    conn: &rusqlite::Connection,
    filter: &str,
    params: impl rusqlite::Params,
    render: PostRenderer,
) -> rusqlite::Result<Vec<FeedEntry>> {
    let sql = format!(
        "SELECT p.id, p.comment_count, p.rendered_version, p.rendered, p.author_id FROM posts p INDEXED BY posts_feed {filter}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params)?;
    let mut entries = Vec::new();
    while let Some(row) = rows.next()? {
        let id = uuid_col(row, 0, PostId::from_slice)?;
        let json = match row.get::<_, Option<i64>>(2)? {
            Some(v) if v == render.version => row.get(3)?,
            _ => match load_post(conn, id)? {
                Some(post) => (render.render)(&post),
                None => continue,
            },
        };
        entries.push(FeedEntry {
            id,
            author: uuid_col(row, 4, UserId::from_slice)?,
            comment_count: row.get(1)?,
            json,
        });
    }
    Ok(entries)
}

#[async_trait]
impl PostStore for SqliteStore {
    async fn create_post(
        &self,
        post: &NewPost,
        from_upload: Option<UploadId>,
        answer: Option<KeyAnswer<Post>>,
    ) -> StoreResult<Post> {
        let p = post.clone();
        let render = self.render;
        let created = self
            .write(move |tx| {
                if let Some(upload) = from_upload {
                    // Consume the finished upload exactly once, in this transaction.
                    queue_chunk_deletions(tx, upload)?;
                    let consumed = tx.execute(
                        "DELETE FROM uploads WHERE id = ?1 AND owner_id = ?2 AND upload_offset = length",
                        params![upload.as_bytes(), p.author.id.as_bytes()],
                    )?;
                    if consumed == 0 {
                        return Err(StoreError::UploadUnavailable);
                    }
                }
                let post = p.as_post();
                tx.execute(
                    "INSERT INTO posts (id, author_id, caption, status, filter, dither_levels, original_key, \
                     original_format, created_at, updated_at, expires_at, version, rendered, rendered_version, alt_text) \
                     VALUES (?1, ?2, ?3, 'processing', ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11, ?12, ?13)",
                    params![
                        p.id.as_bytes(),
                        p.author.id.as_bytes(),
                        p.caption.as_str(),
                        p.filter.name(),
                        p.filter.levels(),
                        p.original_key,
                        p.original_format,
                        ms(p.created_at),
                        p.expires_at.map(ms),
                        post.version,
                        (render.render)(&post),
                        render.version,
                        p.alt_text.as_str(),
                    ],
                )?;
                tx.execute(
                    "INSERT INTO jobs (id, post_id, run_at, created_at) VALUES (?1, ?2, ?3, ?3)",
                    params![uuid::Uuid::now_v7().as_bytes(), p.id.as_bytes(), ms(p.created_at)],
                )?;
                if let Some(answer) = answer {
                    super::idempotency::record_answer(tx, &answer.scope_key, &(answer.render)(&post))?;
                }
                Ok(post)
            })
            .await?;
        self.jobs_queued.notify_one();
        Ok(created)
    }

    async fn post(&self, id: PostId) -> StoreResult<Option<Post>> {
        self.read(move |conn| Ok(load_post(conn, id)?)).await
    }

    async fn feed(
        &self,
        after: Option<FeedCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<FeedEntry>> {
        let render = self.render;
        let window = FeedWindow { after, limit, now };
        self.read(move |conn| Ok(read_feed(conn, window, render)?))
            .await
    }

    async fn feed_with_comments(
        &self,
        window: FeedWindow,
        wanted: CommentsWanted,
    ) -> StoreResult<FeedWithComments> {
        let render = self.render;
        self.read(move |conn| {
            let entries = read_feed(conn, window, render)?;
            let asks: Vec<(PostId, OlderComments)> = entries
                .iter()
                .filter_map(|e| wanted(e).map(|ask| (e.id, ask)))
                .collect();
            let comments = super::comments::read_older_comments(conn, &asks)?;
            Ok(FeedWithComments {
                entries,
                wanted: asks,
                comments,
            })
        })
        .await
    }

    async fn posts_by_author(
        &self,
        author: UserId,
        after: Option<IdCursor>,
        limit: u32,
        now: Timestamp,
    ) -> StoreResult<Vec<Post>> {
        // The largest possible id stands in for "no cursor" so one statement serves both.
        let before = after.map(|c| c.0).unwrap_or([0xFF; 16]);
        self.read(move |conn| {
            let sql = format!(
                "SELECT {POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id \
                 WHERE p.author_id = ?1 AND p.status = 'ready' AND p.id < ?2 \
                 AND (p.expires_at IS NULL OR p.expires_at > ?3) ORDER BY p.id DESC LIMIT ?4"
            );
            Ok(conn
                .prepare_cached(&sql)?
                .query_map(
                    params![author.as_bytes(), before.as_slice(), ms(now), limit],
                    post_from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn edit_post(&self, request: EditRequest) -> StoreResult<Result<Post, EditRefusal>> {
        let render = self.render;
        self.write(move |tx| {
            let Some(mut post) = load_post(tx, request.post)? else {
                return Ok(Err(EditRefusal::NotFound));
            };
            if let Err(refusal) = post.apply_edit(&request) {
                return Ok(Err(refusal));
            }
            save_edit(tx, &post, render)?;
            Ok(Ok(post))
        })
        .await
    }

    async fn expired_posts(&self, now: Timestamp, limit: u32) -> StoreResult<Vec<PostId>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id FROM posts WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2")?
                .query_map(params![ms(now), limit], |r| super::rows::uuid_col(r, 0, PostId::from_slice))?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_post(&self, id: PostId) -> StoreResult<Option<DeletedPost>> {
        self.write(move |tx| {
            let keys: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT original_key, image_key FROM posts WHERE id = ?1",
                    [id.as_bytes()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((original, image)) = keys else {
                return Ok(None);
            };
            // Comments and the job go with the post (ON DELETE CASCADE).
            tx.execute("DELETE FROM posts WHERE id = ?1", [id.as_bytes()])?;
            let mut blob_keys = vec![original];
            blob_keys.extend(image.map(|k| derived_blob_key(&k)));
            for key in &blob_keys {
                queue_blob_deletion(tx, key)?;
            }
            Ok(Some(DeletedPost { blob_keys }))
        })
        .await
    }
}
