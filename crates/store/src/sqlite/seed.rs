//! Bulk loading of synthetic data for benchmarks: one transaction, prepared
//! statements, rows shaped exactly as the service writes them.

use rusqlite::params;

use super::SqliteStore;
use super::rows::{load_post, ms, newest_comments, save_comments, store_rendering};
use crate::PostRenderer;
use domain::{CommentId, PostId, UserId, now};
use rusqlite::Connection;

/// A deterministic xorshift generator: benchmarks must be reproducible, and
/// seeding needs no cryptographic quality.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Comments per post, about 10 on average: nine in ten posts 0–5, one in ten
/// 20–120, one in ten thousand 2,000–5,000, one in a hundred thousand
/// 10,000–50,000 (the viral few).
fn comment_count(rng: &mut Rng) -> u64 {
    match rng.below(100_000) {
        0 => 10_000 + rng.below(40_000),
        1..=10 => 2_000 + rng.below(3_000),
        11..=9_999 => 20 + rng.below(100),
        _ => rng.below(6),
    }
}

const WORDS: &[&str] = &[
    "sunset",
    "over",
    "the",
    "bay",
    "with",
    "friends",
    "coffee",
    "morning",
    "light",
    "city",
    "walk",
    "new",
    "favourite",
    "place",
    "love",
    "this",
    "view",
    "so",
    "good",
    "finally",
    "weekend",
    "trip",
    "mountains",
    "beach",
    "look",
    "at",
    "that",
    "colour",
    "amazing",
    "photo",
];

/// Text of `min..=max` characters from a small vocabulary: realistic lengths
/// (SQLite stores and compares the real bytes) without a text corpus.
fn text(rng: &mut Rng, min: u64, max: u64) -> String {
    let len = (min + rng.below(max - min + 1)) as usize;
    let mut out = String::with_capacity(len + 12);
    while out.len() < len {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    out.truncate(len);
    out.trim_end().to_owned()
}

/// Posts per transaction: keeps the WAL small while loading millions of rows.
const POSTS_PER_COMMIT: usize = 20_000;

impl SqliteStore {
    /// Inserts `posts` ready posts by `users` users, with skewed comment counts
    /// (see `comment_count`), in transactions of `POSTS_PER_COMMIT` posts;
    /// `progress` hears the posts and comments written so far after each.
    /// Returns the number of comments written.
    pub fn seed_synthetic(&self, users: usize, posts: usize, seed: u64) -> anyhow::Result<u64> {
        self.seed_synthetic_with_progress(users, posts, seed, &|_, _| {})
    }

    pub fn seed_synthetic_with_progress(
        &self,
        users: usize,
        posts: usize,
        seed: u64,
        progress: &dyn Fn(u64, u64),
    ) -> anyhow::Result<u64> {
        let mut rng = Rng(seed.max(1));
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let start = ms(now()) - 1000 * posts as i64;
        let user_ids: Vec<UserId> = (0..users).map(|_| UserId::new()).collect();
        {
            let tx = conn.transaction()?;
            let mut insert_user = tx.prepare("INSERT INTO users (id, username, password_hash, created_at) VALUES (?1, ?2, 'x', ?3)")?;
            for (n, id) in user_ids.iter().enumerate() {
                insert_user.execute(params![id.as_bytes(), format!("seed_user_{n}"), start])?;
            }
            drop(insert_user);
            tx.commit()?;
        }
        let mut comments = 0;
        let mut done = 0;
        while done < posts {
            let batch = POSTS_PER_COMMIT.min(posts - done);
            let tx = conn.transaction()?;
            comments += seed_batch(&tx, self.render, &mut rng, &user_ids, start, done, batch)?;
            tx.commit()?;
            // The checkpointer follows the group writer's commits, which a bulk
            // load bypasses: keep the WAL short here instead (this checkpoint also
            // fsyncs what the writer connection's synchronous=NORMAL left unsynced).
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
            done += batch;
            progress(done as u64, comments);
        }
        conn.execute_batch("ANALYZE")?;
        // Leaves the database file complete on its own (the dataset is copied as one file).
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(comments)
    }
}

fn seed_batch(
    tx: &rusqlite::Transaction<'_>,
    render: PostRenderer,
    rng: &mut Rng,
    user_ids: &[UserId],
    start: i64,
    first: usize,
    posts: usize,
) -> anyhow::Result<u64> {
    let users = user_ids.len();
    let mut comments = 0;
    let mut insert_post = tx.prepare_cached(
            "INSERT INTO posts (id, author_id, caption, status, filter, original_key, original_format, image_key, \
             image_width, image_height, blurhash, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'ready', 'none', 'originals/seed', 'jpeg', ?4, 600, 600, 'LEHV6nWB2yk8pyo0adR*.7kCMdnj', ?5, ?5)",
        )?;
    let mut insert_comment = tx.prepare_cached(
            "INSERT INTO comments (id, post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
    for n in first..first + posts {
        let id = PostId::new();
        let author = user_ids[rng.below(users as u64) as usize];
        let caption = text(rng, 10, 200);
        let key = format!(
            "{:040x}",
            u128::from(rng.next()) << 64 | u128::from(rng.next())
        );
        insert_post.execute(params![
            id.as_bytes(),
            author.as_bytes(),
            caption,
            key,
            start + n as i64 * 1000
        ])?;
        let count = comment_count(rng);
        for _ in 0..count {
            let by = user_ids[rng.below(users as u64) as usize];
            insert_comment.execute(params![
                CommentId::new().as_bytes(),
                id.as_bytes(),
                by.as_bytes(),
                text(rng, 5, 300),
                start + n as i64 * 1000 + 10,
            ])?;
        }
        if count > 0 {
            set_post_comments(tx, id, count as i64, render)?;
        } else {
            store_rendering(tx, id, render)?;
        }
        comments += count;
    }
    Ok(comments)
}

/// Sets a post's comment count and rewrites what depends on its comments
/// from its comments table (bulk loads insert comments without counting them).
fn set_post_comments(
    conn: &Connection,
    post_id: PostId,
    count: i64,
    render: PostRenderer,
) -> rusqlite::Result<()> {
    let Some(mut post) = load_post(conn, post_id)? else {
        return Ok(());
    };
    post.comment_count = count;
    post.last_comments = newest_comments(conn, post_id)?;
    post.version += 1;
    save_comments(conn, &post, render)
}
