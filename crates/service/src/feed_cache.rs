//! The hot first pages of the feed, kept rendered in memory.
//!
//! Exactness: every write that can change the feed (a comment added or
//! deleted, a post edited, deleted, expired or becoming ready) tells the cache
//! *after* it committed and *before* it is acknowledged, so a page cached
//! before that write is never served again by this process if the write changed
//! it — a client always reads its own writes, and no one reads a page older
//! than a write this node acknowledged. Comments are checked against each
//! cached page: a comment changes a page only if its post is on it or now ranks
//! above the page's last post; any other write forgets every page. Writes made
//! by *other* processes (more API nodes or workers on PostgreSQL, a separate
//! `imagegram worker`) and posts passing their expiry time are not seen here;
//! for those a page lives at most `ttl` (default 1 s). That is the documented
//! staleness bound.
//! Only the first page (no cursor) of each limit is cached: it is what nearly
//! every client asks for, and deep pages are too many to be hot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use domain::PostId;

use super::hidden::FirstPosts;

/// A rendered response: the body and its `Link` header value.
#[derive(Clone)]
pub struct CachedPage {
    pub body: Bytes,
    pub link: Option<String>,
}

/// A cached page that may be served.
pub struct Hit {
    pub page: CachedPage,
    /// The posts it was made from, to make the page of a reader who blocks someone.
    pub posts: Arc<FirstPosts>,
    /// Past half its life: worth rendering again before it expires, so that
    /// requests are not left waiting for a render when it does.
    pub refresh: bool,
}

/// Which posts a page shows, enough to tell whether a comment changes it.
pub struct PageShape {
    pub posts: Vec<PostId>,
    /// Feed position (comment count, id) of the last post when the page is
    /// full; `None` when the whole feed fits on it.
    pub last: Option<(i64, PostId)>,
}

impl PageShape {
    /// Whether a comment on `post`, which now has `count` comments, changes the page.
    fn changed_by_comment(&self, post: PostId, count: i64) -> bool {
        let Some((last_count, last_id)) = self.last else {
            return true;
        };
        // Feed order: comment count descending, then id descending.
        self.posts.contains(&post) || (count, post.as_bytes()) > (last_count, last_id.as_bytes())
    }
}

struct Entry {
    generation: u64,
    stored: Instant,
    page: CachedPage,
    posts: Arc<FirstPosts>,
    shape: PageShape,
}

#[derive(Default)]
struct State {
    generation: u64,
    /// Pages being read and rendered. Their shape is unknown until stored, and
    /// their read may have missed a write that commits meanwhile, so while any
    /// is running every feed write forgets (makes unstorable) all pages.
    rendering: usize,
    pages: HashMap<u32, Entry>,
}

pub struct FeedCache {
    ttl: Duration,
    state: Mutex<State>,
    /// One render at a time per limit: a request that misses waits for the
    /// render in progress and then, usually, hits. Without it every request in
    /// flight when a page expired (every `ttl` on a busy node) read and rendered
    /// the same page at once, and the pile-up showed as a first-page p99 of
    /// ~50 ms against a p50 of under 2.
    turns: Vec<tokio::sync::Mutex<()>>,
}

/// The largest `limit` a page can have (see `domain::Limit`); larger share its turn.
const MAX_LIMIT: usize = 100;

/// A page being rendered: register before reading the feed, store with `put`.
pub struct Render<'a> {
    cache: &'a FeedCache,
    generation: u64,
}

impl Render<'_> {
    /// Stores the page unless a write that might change it happened since `begin`.
    pub fn put(self, limit: u32, page: CachedPage, posts: Arc<FirstPosts>, shape: PageShape) {
        if !self.cache.enabled() {
            return;
        }
        let mut state = self.cache.state();
        if state.generation == self.generation {
            let entry = Entry {
                generation: self.generation,
                stored: Instant::now(),
                page,
                posts,
                shape,
            };
            state.pages.insert(limit, entry);
        }
    }
}

impl Drop for Render<'_> {
    fn drop(&mut self) {
        self.cache.state().rendering -= 1;
    }
}

impl FeedCache {
    /// A cache whose pages live at most `ttl`; zero disables it.
    pub fn new(ttl: Duration) -> Self {
        FeedCache {
            ttl,
            state: Mutex::new(State::default()),
            turns: (0..=MAX_LIMIT)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every cached page: call after a committed write that may change the feed.
    pub fn invalidate(&self) {
        self.state().generation += 1;
    }

    /// After a committed comment on `post`, which now has `count` comments.
    pub fn comment_added(&self, post: PostId, count: i64) {
        self.forget_pages_where(|shape| shape.changed_by_comment(post, count));
    }

    /// After a committed comment deletion on `post`: fewer comments can only
    /// move a post down, so only pages showing it change.
    pub fn comment_removed(&self, post: PostId) {
        self.forget_pages_where(|shape| shape.posts.contains(&post));
    }

    fn forget_pages_where(&self, changed: impl Fn(&PageShape) -> bool) {
        let mut state = self.state();
        let current = state.generation;
        let changes_one = state.rendering > 0
            || state
                .pages
                .values()
                .any(|e| e.generation == current && changed(&e.shape));
        if changes_one {
            state.generation += 1;
        }
    }

    /// The first page of `limit` items, if cached and still valid.
    pub fn get(&self, limit: u32) -> Option<Hit> {
        let state = self.state();
        let entry = state.pages.get(&limit)?;
        let age = entry.stored.elapsed();
        (entry.generation == state.generation && age < self.ttl).then(|| Hit {
            page: entry.page.clone(),
            posts: entry.posts.clone(),
            refresh: age >= self.ttl / 2,
        })
    }

    /// Waits until no other request is rendering the page of `limit`; hold
    /// the guard while checking the cache again and rendering.
    pub async fn render_turn(&self, limit: u32) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn(limit).lock().await
    }

    /// The turn to render the page of `limit` if no one else has it.
    pub fn try_render_turn(&self, limit: u32) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.turn(limit).try_lock().ok()
    }

    fn turn(&self, limit: u32) -> &tokio::sync::Mutex<()> {
        &self.turns[(limit as usize).min(MAX_LIMIT)]
    }

    /// Registers a page about to be read: call *before* querying, so a write
    /// that lands during the query makes the result unstorable.
    pub fn begin(&self) -> Render<'_> {
        let mut state = self.state();
        state.rendering += 1;
        Render {
            cache: self,
            generation: state.generation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(s: &'static str) -> CachedPage {
        CachedPage {
            body: Bytes::from_static(s.as_bytes()),
            link: None,
        }
    }

    fn id(n: u8) -> PostId {
        PostId::from_slice(&[n; 16]).unwrap()
    }

    /// A full page of two posts: id 9 with 50 comments, then id 5 with 10.
    fn shape() -> PageShape {
        PageShape {
            posts: vec![id(9), id(5)],
            last: Some((10, id(5))),
        }
    }

    fn cached(cache: &FeedCache) {
        cache.begin().put(2, page("a"), Arc::default(), shape());
        assert!(cache.get(2).is_some());
    }

    #[test]
    fn a_comment_forgets_only_the_pages_it_changes() {
        let cache = FeedCache::new(Duration::from_secs(60));
        cached(&cache);
        cache.comment_added(id(7), 9); // below the last post: the page stands
        cache.comment_added(id(4), 10); // same count, older id: still below
        cache.comment_removed(id(7));
        assert!(cache.get(2).is_some());
        cache.comment_added(id(6), 10); // same count, newer id: now above the last post
        assert!(cache.get(2).is_none());
        cached(&cache);
        cache.comment_added(id(9), 51); // on the page: its last comments changed
        assert!(cache.get(2).is_none());
        cached(&cache);
        cache.comment_removed(id(5));
        assert!(cache.get(2).is_none());
        // A page holding the whole feed changes with any comment.
        cache.begin().put(
            2,
            page("a"),
            Arc::default(),
            PageShape {
                posts: vec![id(9)],
                last: None,
            },
        );
        cache.comment_added(id(1), 1);
        assert!(cache.get(2).is_none());
    }

    #[test]
    fn a_comment_during_a_render_makes_it_unstorable() {
        let cache = FeedCache::new(Duration::from_secs(60));
        cached(&cache);
        let render = cache.begin(); // e.g. another limit, read before the comment commits
        cache.comment_added(id(7), 1); // would change no stored page, but the render may miss it
        render.put(3, page("stale"), Arc::default(), shape());
        assert!(cache.get(3).is_none());
        assert!(cache.get(2).is_none());
    }

    #[test]
    fn a_write_invalidates_at_once() {
        let cache = FeedCache::new(Duration::from_secs(60));
        cache.begin().put(20, page("a"), Arc::default(), shape());
        assert_eq!(cache.get(20).unwrap().page.body, "a");
        assert!(cache.get(10).is_none());
        cache.invalidate();
        assert!(cache.get(20).is_none());
    }

    #[test]
    fn a_page_read_before_a_write_is_not_stored() {
        let cache = FeedCache::new(Duration::from_secs(60));
        let render = cache.begin();
        cache.invalidate(); // a write commits while the query runs
        render.put(20, page("stale"), Arc::default(), shape());
        assert!(cache.get(20).is_none());
    }

    #[tokio::test]
    async fn past_half_its_life_one_request_refreshes_while_others_are_served() {
        let cache = FeedCache::new(Duration::from_millis(200));
        cached(&cache);
        assert!(!cache.get(2).unwrap().refresh);
        std::thread::sleep(Duration::from_millis(110));
        let hit = cache.get(2).unwrap();
        assert!(hit.refresh);
        let turn = cache.try_render_turn(2).expect("no render in progress");
        assert!(cache.try_render_turn(2).is_none()); // the others are served `hit.page`
        cache.begin().put(2, page("b"), Arc::default(), shape());
        drop(turn);
        let fresh = cache.get(2).unwrap();
        assert!(!fresh.refresh);
        assert_eq!(fresh.page.body, "b");
    }

    #[test]
    fn pages_expire_after_the_ttl_and_zero_disables() {
        let cache = FeedCache::new(Duration::from_millis(20));
        cache.begin().put(20, page("a"), Arc::default(), shape());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(20).is_none());
        let off = FeedCache::new(Duration::ZERO);
        off.begin().put(20, page("a"), Arc::default(), shape());
        assert!(off.get(20).is_none());
    }
}
