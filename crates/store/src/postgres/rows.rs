//! Row ↔ domain conversions for the PostgreSQL store.

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::{PostRenderer, last_comments};
use domain::idempotency::StoredResponse;
use domain::rendering::comment_event;
use domain::{
    AltText, Caption, Comment, CommentBody, CommentId, ImageInfo, Post, PostFilter, PostId,
    PostStatus, User, UserId, Username,
};

pub const POST_COLUMNS: &str = "p.id, p.caption, p.status, p.failure_reason, p.filter, p.dither_levels, \
     p.created_at, p.updated_at, p.expires_at, p.comment_count, p.image_key, p.image_width, \
     p.image_height, p.blurhash, p.last_comments::text AS last_comments, \
     u.id AS user_id, u.username, u.created_at AS user_created_at, p.version, p.alt_text";

pub fn user_from_row(row: &PgRow, id: &str, created: &str) -> sqlx::Result<User> {
    Ok(User {
        id: UserId::from_uuid(row.try_get(id)?),
        username: Username::from_trusted(row.try_get("username")?),
        created_at: row.try_get(created)?,
    })
}

pub fn post_from_row(row: &PgRow) -> sqlx::Result<Post> {
    let id = PostId::from_uuid(row.try_get("id")?);
    let status: String = row.try_get("status")?;
    let image = match row.try_get::<Option<String>, _>("image_key")? {
        Some(key) => Some(ImageInfo {
            key,
            width: row.try_get::<i32, _>("image_width")? as u32,
            height: row.try_get::<i32, _>("image_height")? as u32,
            blurhash: row
                .try_get::<Option<String>, _>("blurhash")?
                .unwrap_or_default(),
        }),
        None => None,
    };
    let last: String = row.try_get("last_comments")?;
    let last_comments =
        last_comments::decode(id, &last).map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(Post {
        id,
        caption: Caption::from_trusted(row.try_get("caption")?),
        alt_text: AltText::from_trusted(row.try_get("alt_text")?),
        status: PostStatus::parse(&status).unwrap_or(PostStatus::Failed),
        failure_reason: row.try_get("failure_reason")?,
        filter: PostFilter::from_stored(
            &row.try_get::<String, _>("filter")?,
            row.try_get::<Option<i16>, _>("dither_levels")?
                .map(i64::from),
        ),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        expires_at: row.try_get("expires_at")?,
        comment_count: row.try_get("comment_count")?,
        image,
        last_comments,
        author: user_from_row(row, "user_id", "user_created_at")?,
        version: row.try_get("version")?,
    })
}

pub async fn load_post<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    id: PostId,
) -> sqlx::Result<Option<Post>> {
    post_where_id(conn, id, "").await
}

/// The post with id `id`, joined with its author; `tail` ends the statement.
async fn post_where_id<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    id: PostId,
    tail: &str,
) -> sqlx::Result<Option<Post>> {
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = $1{tail}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .try_map(|r: PgRow| post_from_row(&r))
        .fetch_optional(conn)
        .await
}

/// The version of a post's row as read: its `xmin`, the transaction that
/// wrote it. Every change to a post or its comments rewrites the post's row
/// (the count and the newest comments live there), so a write conditioned on
/// it applies only if nothing changed since the read: the optimistic path of
/// the comment writers, which needs neither a transaction block nor a lock.
/// Read under the row lock (`lock_post_for_write`), it cannot change before
/// the holder writes: taking the lock marks the row without rewriting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowVersion(i64);

/// The post with its row version, and the author of comment `comment` on it
/// (if there is one): what a comment writer decides on, in one statement.
pub async fn read_post_for_write<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    id: PostId,
    comment: Option<CommentId>,
) -> sqlx::Result<Option<PostForWrite>> {
    post_for_write(conn, id, comment, "").await
}

/// `read_post_for_write` under the post's row lock (see `lock_post`). The
/// comment is read by a statement of its own once the lock is held: a
/// statement sees the rows committed when it began, and the writer whose
/// lock it waited for may have deleted that comment meanwhile.
pub async fn lock_post_for_write(
    conn: &mut sqlx::PgConnection,
    id: PostId,
    comment: Option<CommentId>,
) -> sqlx::Result<Option<PostForWrite>> {
    let Some((post, version, _)) = post_for_write(&mut *conn, id, None, " FOR UPDATE OF p").await?
    else {
        return Ok(None);
    };
    let Some(comment) = comment else {
        return Ok(Some((post, version, None)));
    };
    let author: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT author_id FROM comments WHERE id = $1 AND post_id = $2")
            .bind(comment.as_uuid())
            .bind(id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(Some((post, version, author.map(UserId::from_uuid))))
}

/// A post as a comment writer reads it: the post, its row version, and the
/// author of the comment asked about, if it is on this post.
pub type PostForWrite = (Post, RowVersion, Option<UserId>);

async fn post_for_write<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    id: PostId,
    comment: Option<CommentId>,
    tail: &str,
) -> sqlx::Result<Option<PostForWrite>> {
    let sql = format!(
        "SELECT {POST_COLUMNS}, p.xmin::text::bigint AS row_version, \
         (SELECT c.author_id FROM comments c WHERE c.id = $2 AND c.post_id = p.id) AS comment_author \
         FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = $1{tail}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(id.as_uuid())
        .bind(comment.map(|c| *c.as_uuid()))
        .try_map(|r: PgRow| {
            Ok((
                post_from_row(&r)?,
                RowVersion(r.try_get("row_version")?),
                r.try_get::<Option<uuid::Uuid>, _>("comment_author")?
                    .map(UserId::from_uuid),
            ))
        })
        .fetch_optional(conn)
        .await
}

/// The first CTE of both comment writes: what a comment changes on its post
/// (`Post::accept_comment`, `Post::remove_comment`) — count, newest comments,
/// version and rendering, only those columns — applied only if the row is as
/// it was read (`RowVersion`). Parameters $1–$7, bound by `bind_post_comments`.
macro_rules! post_comments_cte {
    () => {
        "post AS (UPDATE posts SET comment_count = $1, last_comments = $2::jsonb, \
           version = $3, rendered = $4, rendered_version = $5 \
           WHERE id = $6 AND xmin = $7::bigint::text::xid RETURNING id)"
    };
}

type WriteQuery<'q> =
    sqlx::query::QueryScalar<'q, sqlx::Postgres, bool, sqlx::postgres::PgArguments>;

fn bind_post_comments<'q>(
    query: WriteQuery<'q>,
    post: &'q Post,
    read_at: RowVersion,
    render: PostRenderer,
) -> WriteQuery<'q> {
    query
        .bind(post.comment_count)
        .bind(last_comments::encode(&post.last_comments))
        .bind(post.version)
        .bind((render.render)(post))
        .bind(render.version)
        .bind(post.id.as_uuid())
        .bind(read_at.0)
}

/// A new comment's writes in one statement: the comment, its post's count,
/// newest comments, version and rendering, the notification of the post's
/// author (counter, event, NOTIFY on commit) and the Idempotency-Key's answer.
pub struct CommentWrite<'a> {
    pub comment: &'a Comment,
    /// The key's scope and the answer to record with the comment.
    pub answer: Option<&'a (String, StoredResponse)>,
    pub render: PostRenderer,
}

impl CommentWrite<'_> {
    /// Writes the comment onto `post` (as `Post::accept_comment` left it),
    /// notifying `notify`, unless the post's row is no longer as it was read
    /// at `read_at`; returns whether it was written.
    pub async fn run<'e>(
        &self,
        conn: impl sqlx::PgExecutor<'e>,
        post: &Post,
        read_at: RowVersion,
        notify: Option<UserId>,
    ) -> sqlx::Result<bool> {
        // Data-modifying CTEs all run, against one snapshot; each later one
        // reads the post's RETURNING row, so none writes if the post's did not.
        // The event key is `crate::event_key` (user id without dashes, seq to
        // 20 digits), made here because the seq is only known here; the
        // statements test compares the two.
        let c = self.comment;
        let query = sqlx::query_scalar(concat!(
            "WITH ",
            post_comments_cte!(),
            ", comment AS (INSERT INTO comments (id, post_id, author_id, body, created_at) \
               SELECT $8, id, $9, $10, $11 FROM post), \
             seq AS (UPDATE users SET event_seq = event_seq + 1 \
               WHERE id = $12 AND EXISTS (SELECT 1 FROM post) RETURNING id, event_seq), \
             event AS (INSERT INTO events (key, user_id, seq, kind, data, created_at) \
               SELECT replace(id::text, '-', '') || ':' || lpad(event_seq::text, 20, '0'), \
               id, event_seq, 'comment.created', $13, now() FROM seq), \
             answer AS (UPDATE idempotency_keys SET state = 'done', status = $14, headers = $15, body = $16 \
               WHERE scope_key = $17 AND EXISTS (SELECT 1 FROM post)) \
             SELECT EXISTS (SELECT 1 FROM post) AND \
               (SELECT count(pg_notify($18, id::text)) FROM seq) >= 0",
        ));
        bind_post_comments(query, post, read_at, self.render)
            .bind(c.id.as_uuid())
            .bind(c.author.id.as_uuid())
            .bind(c.body.as_str())
            .bind(c.created_at)
            .bind(notify.map(|u| *u.as_uuid()))
            .bind(notify.map(|_| comment_event(c).to_string()))
            .bind(self.answer.map(|(_, r)| i32::from(r.status)))
            .bind(self.answer.map(|(_, r)| crate::answers::headers_json(r)))
            .bind(self.answer.map(|(_, r)| r.body.as_slice()))
            .bind(self.answer.map(|(key, _)| key.as_str()))
            .bind(EVENTS_CHANNEL)
            .fetch_one(conn)
            .await
    }
}

/// A comment's deletion in one statement: the post's count, newest comments,
/// version and rendering, and the comment's row, unless the post's row is no
/// longer as it was read at `read_at`. Returns whether it was written.
pub async fn write_comment_removal<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    post: &Post,
    read_at: RowVersion,
    comment: CommentId,
    render: PostRenderer,
) -> sqlx::Result<bool> {
    let query = sqlx::query_scalar(concat!(
        "WITH ",
        post_comments_cte!(),
        ", gone AS (DELETE FROM comments WHERE id = $8 AND post_id IN (SELECT id FROM post)) \
         SELECT EXISTS (SELECT 1 FROM post)",
    ));
    bind_post_comments(query, post, read_at, render)
        .bind(comment.as_uuid())
        .fetch_one(conn)
        .await
}

/// Rewrites the rendering kept beside the post from its row as it now is;
/// runs inside the transaction that changed the row. Returns the post.
pub async fn store_rendering(
    conn: &mut sqlx::PgConnection,
    id: PostId,
    render: PostRenderer,
) -> sqlx::Result<Option<Post>> {
    let Some(post) = load_post(&mut *conn, id).await? else {
        return Ok(None);
    };
    sqlx::query("UPDATE posts SET rendered = $1, rendered_version = $2 WHERE id = $3")
        .bind((render.render)(&post))
        .bind(render.version)
        .bind(post.id.as_uuid())
        .execute(&mut *conn)
        .await?;
    Ok(Some(post))
}

pub const COMMENT_COLUMNS: &str = "c.id, c.post_id, c.body, c.created_at, u.id AS user_id, u.username, u.created_at AS user_created_at";

pub fn comment_from_row(row: &PgRow) -> sqlx::Result<Comment> {
    Ok(Comment {
        id: CommentId::from_uuid(row.try_get("id")?),
        post_id: PostId::from_uuid(row.try_get("post_id")?),
        body: CommentBody::from_trusted(row.try_get("body")?),
        created_at: row.try_get("created_at")?,
        author: user_from_row(row, "user_id", "user_created_at")?,
    })
}

/// The post with its row locked for the rest of the transaction: every
/// comment writer takes this lock first (as a post's deletion does), so they
/// serialise per post, never deadlock, and each sees the last one's copies.
pub async fn lock_post(conn: &mut sqlx::PgConnection, id: PostId) -> sqlx::Result<Option<Post>> {
    post_where_id(conn, id, " FOR UPDATE OF p").await
}

/// The post's newest comments as its comments table has them, newest first,
/// leaving out `except` (a comment being deleted).
pub async fn newest_comments<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    post_id: PostId,
    except: CommentId,
) -> sqlx::Result<Vec<Comment>> {
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id \
         WHERE c.post_id = $1 AND c.id <> $3 ORDER BY c.id DESC LIMIT $2"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(post_id.as_uuid())
        .bind(i64::from(last_comments::LAST_COMMENTS))
        .bind(except.as_uuid())
        .try_map(|r: PgRow| comment_from_row(&r))
        .fetch_all(conn)
        .await
}

/// Writes what an edit changes (`Post::apply_edit`), with the rendering.
pub async fn save_edit(
    conn: &mut sqlx::PgConnection,
    post: &Post,
    render: PostRenderer,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE posts SET caption = $1, expires_at = $2, updated_at = $3, version = $4, \
         rendered = $5, rendered_version = $6, alt_text = $8 WHERE id = $7",
    )
    .bind(post.caption.as_str())
    .bind(post.expires_at)
    .bind(post.updated_at)
    .bind(post.version)
    .bind((render.render)(post))
    .bind(render.version)
    .bind(post.id.as_uuid())
    .bind(post.alt_text.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn queue_blob_deletion<'e>(conn: impl PgExecutor<'e>, key: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO blob_deletions (key, created_at) VALUES ($1, now()) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// The channel event writers notify, so streams on every node wake up.
pub const EVENTS_CHANNEL: &str = "imagegram_events";

/// Appends an event for `user` inside the caller's transaction. The counter
/// update takes the user row's lock, so this user's events commit in seq order.
pub async fn append_event(
    conn: &mut sqlx::PgConnection,
    user: uuid::Uuid,
    kind: &str,
    data: &serde_json::Value,
) -> sqlx::Result<()> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE users SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO events (key, user_id, seq, kind, data, created_at) VALUES ($1, $2, $3, $4, $5, now())")
        .bind(crate::event_key(&user, seq))
        .bind(user)
        .bind(seq)
        .bind(kind)
        .bind(data.to_string())
        .execute(&mut *conn)
        .await?;
    // The payload names the user, so each node wakes only that user's streams.
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENTS_CHANNEL)
        .bind(user.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
