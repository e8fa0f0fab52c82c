//! Row ↔ domain conversions for the PostgreSQL store.

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, Row};

use crate::{PostRenderer, last_comments};
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

impl RowVersion {
    pub fn from_stored(xmin: i64) -> Self {
        RowVersion(xmin)
    }
}

/// The post under its row lock (see `lock_post`), with its row version and
/// the author of comment `comment` on it (if there is one). The
/// comment is read by a statement of its own once the lock is held: a
/// statement sees the rows committed when it began, and the writer whose
/// lock it waited for may have deleted that comment meanwhile.
pub async fn lock_post_for_write(
    conn: &mut sqlx::PgConnection,
    id: PostId,
    comment: Option<CommentId>,
) -> sqlx::Result<Option<PostForWrite>> {
    let Some((post, version)) = posts_for_write(&mut *conn, &[id], " FOR UPDATE OF p")
        .await?
        .into_values()
        .next()
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

/// The posts with these ids, each with its row version, in one statement;
/// `tail` ends the statement (a row lock).
pub async fn posts_for_write(
    conn: &mut sqlx::PgConnection,
    ids: &[PostId],
    tail: &str,
) -> sqlx::Result<std::collections::HashMap<PostId, (Post, RowVersion)>> {
    let sql = format!(
        "SELECT {POST_COLUMNS}, p.xmin::text::bigint AS row_version \
         FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ANY($1){tail}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(ids.iter().map(|id| *id.as_uuid()).collect::<Vec<_>>())
        .try_map(|r: PgRow| {
            let post = post_from_row(&r)?;
            Ok((post.id, (post, RowVersion(r.try_get("row_version")?))))
        })
        .fetch_all(conn)
        .await
        .map(|rows| rows.into_iter().collect())
}

/// The first CTE of every comment write: what comments change on their
/// posts (`Post::accept_comment`, `Post::remove_comment`) — count, newest
/// comments, version and rendering, only those columns — for each post only
/// if its row is as it was read (`RowVersion`). The rows are locked in the
/// order given, by id (`PostsWrite::new`), so two writers that share posts
/// never wait for each other in a circle. Parameters $1–$7, bound by
/// `PostsWrite::bind`.
macro_rules! posts_comments_cte {
    () => {
        "post AS (UPDATE posts p SET comment_count = i.comment_count, \
           last_comments = i.last_comments::jsonb, version = i.version, \
           rendered = i.rendered, rendered_version = $6 \
           FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::text[], $7::bigint[]) \
             AS i(id, comment_count, last_comments, version, rendered, row_version) \
           WHERE p.id = i.id AND p.xmin = i.row_version::text::xid RETURNING p.id)"
    };
}
pub(crate) use posts_comments_cte;

/// Posts as comment writes left them, each with its row version as read.
pub struct PostsWrite<'a>(Vec<(&'a Post, RowVersion)>);

impl<'a> PostsWrite<'a> {
    pub fn new(mut posts: Vec<(&'a Post, RowVersion)>) -> Self {
        posts.sort_by_key(|(post, _)| post.id);
        PostsWrite(posts)
    }

    /// Binds $1–$7 of `posts_comments_cte!`.
    pub fn bind<'q, O>(
        &self,
        query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
        render: PostRenderer,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        let posts = &self.0;
        query
            .bind(
                posts
                    .iter()
                    .map(|(p, _)| *p.id.as_uuid())
                    .collect::<Vec<_>>(),
            )
            .bind(
                posts
                    .iter()
                    .map(|(p, _)| p.comment_count)
                    .collect::<Vec<_>>(),
            )
            .bind(
                posts
                    .iter()
                    .map(|(p, _)| last_comments::encode(&p.last_comments))
                    .collect::<Vec<_>>(),
            )
            .bind(posts.iter().map(|(p, _)| p.version).collect::<Vec<_>>())
            .bind(
                posts
                    .iter()
                    .map(|(p, _)| (render.render)(p))
                    .collect::<Vec<_>>(),
            )
            .bind(render.version)
            .bind(posts.iter().map(|(_, at)| at.0).collect::<Vec<_>>())
    }
}

/// Comments' deletions in one statement: each post's count, newest comments,
/// version and rendering, and the comments' rows, for each post only if its
/// row is as it was read. Returns the posts written.
pub async fn write_comment_removals<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    posts: &PostsWrite<'_>,
    removed: &[(PostId, CommentId)],
    render: PostRenderer,
) -> sqlx::Result<Vec<PostId>> {
    let query = sqlx::query_scalar(concat!(
        "WITH ",
        posts_comments_cte!(),
        ", gone AS (DELETE FROM comments c USING unnest($8::uuid[], $9::uuid[]) AS d(post_id, id) \
           WHERE c.id = d.id AND c.post_id = d.post_id AND d.post_id IN (SELECT id FROM post)) \
         SELECT id FROM post",
    ));
    let written: Vec<uuid::Uuid> = posts
        .bind(query, render)
        .bind(
            removed
                .iter()
                .map(|(p, _)| *p.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            removed
                .iter()
                .map(|(_, c)| *c.as_uuid())
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await?;
    Ok(written.into_iter().map(PostId::from_uuid).collect())
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

/// Each post's newest comments as its comments table has them, leaving out
/// `except` (comments being deleted): for every post in `posts` that has
/// any, its post id and comments, newest first, in one statement.
pub async fn newest_comments<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    posts: &[PostId],
    per_post: u32,
    except: &[CommentId],
) -> sqlx::Result<Vec<(PostId, Vec<Comment>)>> {
    // Each post's newest, walking comments_by_post.
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM unnest($1::uuid[]) AS wanted(post_id) \
         CROSS JOIN LATERAL (SELECT * FROM comments x WHERE x.post_id = wanted.post_id \
         AND x.id <> ALL($3) ORDER BY x.id DESC LIMIT $2) c JOIN users u ON u.id = c.author_id \
         ORDER BY c.post_id, c.id DESC"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(posts.iter().map(|p| *p.as_uuid()).collect::<Vec<_>>())
        .bind(i64::from(per_post))
        .bind(except.iter().map(|c| *c.as_uuid()).collect::<Vec<_>>())
        .try_map(|r: PgRow| comment_from_row(&r))
        .fetch_all(conn)
        .await?;
    Ok(grouped_by_post(rows))
}

/// The comments each ask wants (`OlderComments`), per post (those with none
/// left out), in one statement.
pub async fn older_comments<'e>(
    conn: impl sqlx::PgExecutor<'e>,
    asks: &[(PostId, crate::OlderComments)],
) -> sqlx::Result<Vec<(PostId, Vec<Comment>)>> {
    let sql = format!(
        "SELECT {COMMENT_COLUMNS} FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS wanted(post_id, before, n) \
         CROSS JOIN LATERAL (SELECT * FROM comments x WHERE x.post_id = wanted.post_id \
         AND x.id < wanted.before ORDER BY x.id DESC LIMIT wanted.n) c JOIN users u ON u.id = c.author_id \
         ORDER BY c.post_id, c.id DESC"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(asks.iter().map(|(p, _)| *p.as_uuid()).collect::<Vec<_>>())
        .bind(
            asks.iter()
                .map(|(_, a)| *a.before.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            asks.iter()
                .map(|(_, a)| i64::from(a.limit))
                .collect::<Vec<_>>(),
        )
        .try_map(|r: PgRow| comment_from_row(&r))
        .fetch_all(conn)
        .await?;
    Ok(grouped_by_post(rows))
}

/// Comments ordered by post, as (post, its comments) in that order.
fn grouped_by_post(rows: Vec<Comment>) -> Vec<(PostId, Vec<Comment>)> {
    let mut found: Vec<(PostId, Vec<Comment>)> = Vec::new();
    for comment in rows {
        match found.last_mut() {
            Some((post, comments)) if *post == comment.post_id => comments.push(comment),
            _ => found.push((comment.post_id, vec![comment])),
        }
    }
    found
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
