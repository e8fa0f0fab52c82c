//! Bulk loading of synthetic data for benchmarks: one transaction, prepared
//! statements, rows shaped exactly as the service writes them.

use rusqlite::params;

use super::SqliteStore;
use super::rows::{ms, refresh_post_comments};
use crate::domain::{CommentId, PostId, UserId, now};

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

/// Comments per post: most 0–5, one in a hundred 50–500, one in ten thousand thousands.
fn comment_count(rng: &mut Rng) -> u64 {
    match rng.below(10_000) {
        0 => 2_000 + rng.below(3_000),
        1..=99 => 50 + rng.below(450),
        _ => rng.below(6),
    }
}

impl SqliteStore {
    /// Inserts `posts` ready posts by `users` users, with skewed comment counts.
    /// Returns the number of comments written.
    pub fn seed_synthetic(&self, users: usize, posts: usize, seed: u64) -> anyhow::Result<u64> {
        let mut rng = Rng(seed.max(1));
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let start = ms(now()) - 1000 * posts as i64;
        let user_ids: Vec<UserId> = (0..users).map(|_| UserId::new()).collect();
        {
            let mut insert_user = tx.prepare("INSERT INTO users (id, username, password_hash, created_at) VALUES (?1, ?2, 'x', ?3)")?;
            for (n, id) in user_ids.iter().enumerate() {
                insert_user.execute(params![id.as_bytes(), format!("seed_user_{n}"), start])?;
            }
        }
        let mut comments = 0;
        let mut insert_post = tx.prepare(
            "INSERT INTO posts (id, author_id, caption, status, filter, original_key, original_format, image_key, \
             image_width, image_height, blurhash, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'ready', 'none', 'originals/seed', 'jpeg', ?4, 600, 600, 'LEHV6nWB2yk8pyo0adR*.7kCMdnj', ?5, ?5)",
        )?;
        let mut insert_comment = tx.prepare(
            "INSERT INTO comments (id, post_id, author_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut set_count = tx.prepare("UPDATE posts SET comment_count = ?1 WHERE id = ?2")?;
        for n in 0..posts {
            let id = PostId::new();
            let author = user_ids[rng.below(users as u64) as usize];
            let caption =
                "a caption of realistic length for a photo post ".repeat(1 + rng.below(3) as usize);
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
            let count = comment_count(&mut rng);
            for _ in 0..count {
                let by = user_ids[rng.below(users as u64) as usize];
                insert_comment.execute(params![
                    CommentId::new().as_bytes(),
                    id.as_bytes(),
                    by.as_bytes(),
                    "a comment of ordinary length, a sentence or two",
                    start + n as i64 * 1000 + 10,
                ])?;
            }
            if count > 0 {
                set_count.execute(params![count as i64 - 1, id.as_bytes()])?;
                refresh_post_comments(&tx, id, 1)?;
            }
            comments += count;
        }
        drop((insert_post, insert_comment, set_count));
        tx.commit()?;
        conn.execute_batch("ANALYZE")?;
        Ok(comments)
    }
}
