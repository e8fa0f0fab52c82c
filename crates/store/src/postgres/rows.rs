//! Row ↔ domain conversions for the PostgreSQL store.

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::{PostRenderer, last_comments};
use domain::{
    Caption, Comment, CommentBody, CommentId, ImageInfo, Post, PostFilter, PostId, PostStatus,
    User, UserId, Username,
};

pub const POST_COLUMNS: &str = "p.id, p.caption, p.status, p.failure_reason, p.filter, p.dither_levels, \
     p.created_at, p.updated_at, p.expires_at, p.comment_count, p.image_key, p.image_width, \
     p.image_height, p.blurhash, p.last_comments::text AS last_comments, \
     u.id AS user_id, u.username, u.created_at AS user_created_at, p.version";

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

/// The post's newest comments as its comments table has them, newest first.
pub async fn newest_comments(
    conn: &mut sqlx::PgConnection,
    post_id: PostId,
) -> sqlx::Result<Vec<Comment>> {
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id \
         WHERE c.post_id = $1 ORDER BY c.id DESC LIMIT $2"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(post_id.as_uuid())
        .bind(i64::from(last_comments::LAST_COMMENTS))
        .try_map(|r: PgRow| comment_from_row(&r))
        .fetch_all(conn)
        .await
}

/// Writes what a comment changes on its post (`Post::accept_comment`,
/// `Post::remove_comment`): count, newest comments, version, rendering. Only
/// those columns, as on SQLite (an update that names no indexed column it
/// does not change stays cheap on both engines).
pub async fn save_comments(
    conn: &mut sqlx::PgConnection,
    post: &Post,
    render: PostRenderer,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE posts SET comment_count = $1, last_comments = $2::jsonb, version = $3, \
         rendered = $4, rendered_version = $5 WHERE id = $6",
    )
    .bind(post.comment_count)
    .bind(last_comments::encode(&post.last_comments))
    .bind(post.version)
    .bind((render.render)(post))
    .bind(render.version)
    .bind(post.id.as_uuid())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes what an edit changes (`Post::apply_edit`), with the rendering.
pub async fn save_edit(
    conn: &mut sqlx::PgConnection,
    post: &Post,
    render: PostRenderer,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE posts SET caption = $1, expires_at = $2, updated_at = $3, version = $4, \
         rendered = $5, rendered_version = $6 WHERE id = $7",
    )
    .bind(post.caption.as_str())
    .bind(post.expires_at)
    .bind(post.updated_at)
    .bind(post.version)
    .bind((render.render)(post))
    .bind(render.version)
    .bind(post.id.as_uuid())
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
