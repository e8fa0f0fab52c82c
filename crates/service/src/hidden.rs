//! Whose posts and comments a reader does not see: the users they block
//! (PRODUCT.md §3 Safety). Reads that would show any are filtered in the
//! service, once for every backend; a reader who hides no one keeps the
//! fast paths (stored renderings, the cached first feed page) untouched.

use std::sync::Arc;

use aho_corasick::AhoCorasick;

use domain::{Comment, Post, UserId};

/// A set of user ids, and a matcher that finds any of them in a stored
/// rendering: a post's JSON names its author and its newest comments' authors
/// by id, so a rendering that names none of them needs no closer look.
/// (aho-corasick finds all the ids in one pass over the text, where a search
/// per id would read each rendering once per blocked user.)
#[derive(Debug, Default)]
pub struct HiddenAuthors {
    ids: Vec<UserId>,
    matcher: Option<AhoCorasick>,
}

impl HiddenAuthors {
    pub fn new(mut ids: Vec<UserId>) -> Self {
        ids.sort();
        ids.dedup();
        let matcher = (!ids.is_empty()).then(|| {
            AhoCorasick::new(ids.iter().map(|id| id.to_string()))
                .expect("a few thousand fixed 36-byte patterns build")
        });
        HiddenAuthors { ids, matcher }
    }

    pub fn none() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn hides(&self, user: UserId) -> bool {
        self.ids.binary_search(&user).is_ok()
    }

    /// Whether a rendering may show someone hidden (never false when it does).
    pub fn may_show_in(&self, rendering: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(rendering))
    }

    /// Whether the post, as it stands, shows someone hidden in its newest comments.
    pub fn hides_any_of(&self, comments: &[Comment]) -> bool {
        !self.is_empty() && comments.iter().any(|c| self.hides(c.author.id))
    }

    /// Whether the post itself is hidden (its author is).
    pub fn hides_post(&self, post: &Post) -> bool {
        self.hides(post.author.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hidden_ids_in_renderings_and_nothing_else() {
        let (a, b, c) = (UserId::new(), UserId::new(), UserId::new());
        let hidden = HiddenAuthors::new(vec![b, a, a]);
        assert_eq!(hidden.len(), 2);
        assert!(hidden.hides(a) && hidden.hides(b) && !hidden.hides(c));
        assert!(hidden.may_show_in(&format!(r#"{{"author":{{"id":"{b}"}}}}"#)));
        assert!(!hidden.may_show_in(&format!(r#"{{"author":{{"id":"{c}"}}}}"#)));
        let none = HiddenAuthors::none();
        assert!(none.is_empty() && !none.may_show_in(&a.to_string()));
    }
}

/// A reader's blocks both ways, as authentication found them.
#[derive(Debug, Clone)]
pub struct Blocks {
    /// The users this reader blocks: never shown to them.
    pub hidden: Arc<HiddenAuthors>,
    /// The users who block this reader: their posts take no comment from them.
    pub blocked_by: Arc<[UserId]>,
}

impl Default for Blocks {
    fn default() -> Self {
        Blocks {
            hidden: HiddenAuthors::none(),
            blocked_by: Arc::from([]),
        }
    }
}

/// Whom a reader hides: no one for anonymous readers.
pub(crate) fn hidden_by(reader: Option<&super::Account>) -> &HiddenAuthors {
    static NO_ONE: std::sync::LazyLock<HiddenAuthors> =
        std::sync::LazyLock::new(HiddenAuthors::default);
    reader.map_or(&NO_ONE, |a| &a.blocks.hidden)
}

/// Blocks one account may hold: each is checked on every read it makes.
pub const MAX_BLOCKS: usize = 1000;

/// Store pages a filtered listing reads at most for one page of its own; past
/// that it answers with what it found and a cursor to go on from.
const MAX_ROUNDS: usize = 10;

impl super::Services {
    /// The post as a reader who hides `hidden` sees it: none if its author is
    /// hidden, else with its newest comments by authors who are not.
    pub(crate) async fn shown(
        &self,
        mut post: Post,
        hidden: &HiddenAuthors,
    ) -> super::ServiceResult<Option<Post>> {
        if hidden.hides_post(&post) {
            return Ok(None);
        }
        if hidden.hides_any_of(&post.last_comments) {
            post.last_comments = self
                .visible_comments(post.id, hidden, None, domain::LAST_COMMENTS as u32)
                .await?;
        }
        Ok(Some(post))
    }

    /// Up to `limit` comments of the post after `after`, newest first, by
    /// authors `hidden` does not hold.
    pub(crate) async fn visible_comments(
        &self,
        post_id: domain::PostId,
        hidden: &HiddenAuthors,
        mut after: Option<domain::IdCursor>,
        limit: u32,
    ) -> super::ServiceResult<Vec<Comment>> {
        let mut shown = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let batch = self.store.comments(post_id, after, limit.max(20)).await?;
            let full = batch.len() as u32 == limit.max(20);
            after = batch.last().map(|c| domain::IdCursor(*c.id.as_bytes()));
            shown.extend(batch.into_iter().filter(|c| !hidden.hides(c.author.id)));
            if shown.len() as u32 >= limit || !full {
                break;
            }
        }
        shown.truncate(limit as usize);
        Ok(shown)
    }

    /// A feed page for a reader who hides someone: the same ranking, without
    /// their posts, and without their comments among the newest two. Most
    /// renderings name no one hidden and are served as stored.
    pub(crate) async fn feed_hiding(
        &self,
        after: Option<domain::FeedCursor>,
        limit: domain::Limit,
        hidden: &HiddenAuthors,
    ) -> super::ServiceResult<super::Page<domain::rendering::FeedEntry>> {
        use domain::rendering::FeedEntry;
        let want = limit.get() + 1;
        let mut after = after;
        let mut shown: Vec<FeedEntry> = Vec::new();
        let mut exhausted = false;
        for _ in 0..MAX_ROUNDS {
            let batch = self.store.feed(after, want, domain::now()).await?;
            exhausted = (batch.len() as u32) < want;
            after = batch.last().map(|e| domain::FeedCursor {
                comment_count: e.comment_count,
                post_id: e.id,
            });
            for entry in batch {
                if !hidden.may_show_in(&entry.json) {
                    shown.push(entry);
                    continue;
                }
                let Some(post) = self.store.post(entry.id).await? else {
                    continue;
                };
                if let Some(post) = self.shown(post, hidden).await? {
                    shown.push(FeedEntry {
                        json: (store::POST_RENDERER.render)(&post),
                        ..entry
                    });
                }
            }
            if shown.len() as u32 >= want || exhausted {
                break;
            }
        }
        let cursor_of = |c: &domain::FeedCursor| c.encode(&self.cursor_key);
        if shown.len() as u32 >= want || exhausted {
            return Ok(super::Page::from_overfetch(shown, limit.get(), |e| {
                cursor_of(&domain::FeedCursor {
                    comment_count: e.comment_count,
                    post_id: e.id,
                })
            }));
        }
        // Out of rounds: what was found, and the next page from where the reading stopped.
        Ok(super::Page {
            items: shown,
            next_cursor: after.as_ref().map(cursor_of),
        })
    }
}
