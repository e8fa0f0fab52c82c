//! Row ↔ domain conversions shared by the SQLite store's files.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{PostRenderer, last_comments};
use domain::{
    AltText, Caption, Comment, CommentBody, CommentId, ImageInfo, Post, PostFilter, PostId,
    PostStatus, Timestamp, User, UserId, Username, from_millis,
};

pub fn ms(t: Timestamp) -> i64 {
    t.timestamp_millis()
}

pub fn uuid_col<T>(row: &Row<'_>, idx: usize, make: fn(&[u8]) -> Option<T>) -> rusqlite::Result<T> {
    let bytes: Vec<u8> = row.get(idx)?;
    make(&bytes).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(idx, "uuid".into(), rusqlite::types::Type::Blob)
    })
}

/// User columns in the order `user_from_row` reads them, for table alias `u`.
pub const USER_COLUMNS: &str = "u.id, u.username, u.created_at";

pub fn user_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<User> {
    Ok(User {
        id: uuid_col(row, at, UserId::from_slice)?,
        username: Username::from_trusted(row.get(at + 1)?),
        created_at: from_millis(row.get(at + 2)?),
    })
}

/// Post columns in the order `post_from_row` reads them, for aliases `p` and `u`.
pub const POST_COLUMNS: &str = "p.id, p.caption, p.status, p.failure_reason, p.filter, p.dither_levels, \
     p.created_at, p.updated_at, p.expires_at, p.comment_count, p.image_key, p.image_width, \
     p.image_height, p.blurhash, p.last_comments, u.id, u.username, u.created_at, p.version, \
     p.alt_text";

pub fn post_from_row(row: &Row<'_>) -> rusqlite::Result<Post> {
    let id = uuid_col(row, 0, PostId::from_slice)?;
    let status: String = row.get(2)?;
    let image_key: Option<String> = row.get(10)?;
    let image = match image_key {
        Some(key) => Some(ImageInfo {
            key,
            width: row.get(11)?,
            height: row.get(12)?,
            blurhash: row.get::<_, Option<String>>(13)?.unwrap_or_default(),
        }),
        None => None,
    };
    let last: String = row.get(14)?;
    let last_comments = last_comments::decode(id, &last).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(14, rusqlite::types::Type::Text, e.into())
    })?;
    Ok(Post {
        id,
        caption: Caption::from_trusted(row.get(1)?),
        alt_text: AltText::from_trusted(row.get(19)?),
        status: PostStatus::parse(&status).unwrap_or(PostStatus::Failed),
        failure_reason: row.get(3)?,
        filter: PostFilter::from_stored(&row.get::<_, String>(4)?, row.get(5)?),
        created_at: from_millis(row.get(6)?),
        updated_at: from_millis(row.get(7)?),
        expires_at: row.get::<_, Option<i64>>(8)?.map(from_millis),
        comment_count: row.get(9)?,
        image,
        last_comments,
        author: user_from_row(row, 15)?,
        version: row.get(18)?,
    })
}

pub fn load_post(conn: &Connection, id: PostId) -> rusqlite::Result<Option<Post>> {
    let sql = format!(
        "SELECT {POST_COLUMNS} FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ?1"
    );
    conn.prepare_cached(&sql)?
        .query_row([id.as_bytes()], post_from_row)
        .optional()
}

/// Rewrites the rendering kept beside the post from its row as it now is;
/// runs inside the transaction that changed the row. Returns the post.
pub fn store_rendering(
    conn: &Connection,
    id: PostId,
    render: PostRenderer,
) -> rusqlite::Result<Option<Post>> {
    let Some(post) = load_post(conn, id)? else {
        return Ok(None);
    };
    conn.prepare_cached("UPDATE posts SET rendered = ?1, rendered_version = ?2 WHERE id = ?3")?
        .execute(params![
            (render.render)(&post),
            render.version,
            id.as_bytes()
        ])?;
    Ok(Some(post))
}

/// Comment columns for aliases `c` and `u`.
pub const COMMENT_COLUMNS: &str =
    "c.id, c.post_id, c.body, c.created_at, u.id, u.username, u.created_at";

pub fn comment_from_row(row: &Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: uuid_col(row, 0, CommentId::from_slice)?,
        post_id: uuid_col(row, 1, PostId::from_slice)?,
        body: CommentBody::from_trusted(row.get(2)?),
        created_at: from_millis(row.get(3)?),
        author: user_from_row(row, 4)?,
    })
}

/// The post's newest comments as its comments table has them, newest first.
pub fn newest_comments(conn: &Connection, post_id: PostId) -> rusqlite::Result<Vec<Comment>> {
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM comments c JOIN users u ON u.id = c.author_id \
         WHERE c.post_id = ?1 ORDER BY c.id DESC LIMIT ?2"
    );
    conn.prepare_cached(&sql)?
        .query_map(
            params![post_id.as_bytes(), last_comments::LAST_COMMENTS],
            comment_from_row,
        )?
        .collect()
}

/// Writes what a comment changes on its post (`Post::accept_comment`,
/// `Post::remove_comment`): count, newest comments, version, rendering. Only
/// those columns: SQLite maintains every index over a column an UPDATE names,
/// and naming the expiry too cost a comment 3% more instructions (callgrind).
pub fn save_comments(conn: &Connection, post: &Post, render: PostRenderer) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE posts SET comment_count = ?1, last_comments = ?2, version = ?3, rendered = ?4, \
         rendered_version = ?5 WHERE id = ?6",
    )?
    .execute(params![
        post.comment_count,
        last_comments::encode(&post.last_comments),
        post.version,
        (render.render)(post),
        render.version,
        post.id.as_bytes()
    ])?;
    Ok(())
}

/// Writes what an edit changes (`Post::apply_edit`), with the rendering.
pub fn save_edit(conn: &Connection, post: &Post, render: PostRenderer) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE posts SET caption = ?1, expires_at = ?2, updated_at = ?3, version = ?4, \
         rendered = ?5, rendered_version = ?6, alt_text = ?8 WHERE id = ?7",
    )?
    .execute(params![
        post.caption.as_str(),
        post.expires_at.map(ms),
        ms(post.updated_at),
        post.version,
        (render.render)(post),
        render.version,
        post.id.as_bytes(),
        post.alt_text.as_str()
    ])?;
    Ok(())
}

pub fn queue_blob_deletion(conn: &Connection, key: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO blob_deletions (key, created_at) VALUES (?1, ?2)")?
        .execute(params![key, ms(domain::now())])?;
    Ok(())
}

/// Appends an event for `user` inside the caller's transaction, numbered by the
/// user's own counter.
pub fn append_event(
    conn: &Connection,
    user: &[u8],
    kind: &str,
    data: &serde_json::Value,
) -> rusqlite::Result<()> {
    let seq: i64 = conn
        .prepare_cached(
            "UPDATE users SET event_seq = event_seq + 1 WHERE id = ?1 RETURNING event_seq",
        )?
        .query_row([user], |r| r.get(0))?;
    let user_id = uuid::Uuid::from_slice(user)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    conn.prepare_cached("INSERT INTO events (key, user_id, seq, kind, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![
            crate::event_key(&user_id, seq),
            user,
            seq,
            kind,
            data.to_string(),
            ms(domain::now())
        ])?;
    Ok(())
}
