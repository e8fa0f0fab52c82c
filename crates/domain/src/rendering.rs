//! The versioned JSON rendering of posts and comments: what clients see, and
//! what both stores keep beside each post (see `PostRenderer`), so a feed page
//! is assembled from stored text instead of rendered per request.

use serde::Serialize;
use utoipa::ToSchema;

use crate::{Comment, CommentId, ImageInfo, Post, PostId, Timestamp, User, timestamp};

/// A rendering format and its renderer. A stored rendering of another version
/// (an older release's, or none) is not served; the post is rendered afresh.
#[derive(Clone, Copy)]
pub struct PostRenderer {
    pub version: i64,
    pub render: fn(&Post) -> String,
}

/// The derived 600x600 JPEG of a ready post.
#[derive(Serialize, ToSchema)]
pub struct ImageView {
    /// Path of the image on this API (`/v1/images/{key}.jpg`); immutable.
    #[schema(example = "/v1/images/3f2a0c1b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a.jpg")]
    pub url: String,
    pub width: u32,
    pub height: u32,
    #[schema(value_type = String, example = "image/jpeg")]
    pub content_type: &'static str,
    #[schema(example = "LEHV6nWB2yk8pyo0adR*.7kCMdnj")]
    pub blurhash: String,
}

impl From<&ImageInfo> for ImageView {
    fn from(i: &ImageInfo) -> Self {
        ImageView {
            url: i.url(),
            width: i.width,
            height: i.height,
            content_type: "image/jpeg",
            blurhash: i.blurhash.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Comment)]
pub struct CommentView<'a> {
    #[schema(value_type = String, format = Uuid)]
    pub id: CommentId,
    #[schema(value_type = String, format = Uuid)]
    pub post_id: PostId,
    pub author: &'a User,
    #[schema(value_type = String, example = "What a view!")]
    pub body: &'a str,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "timestamp::serialize")]
    pub created_at: Timestamp,
}

impl<'a> From<&'a Comment> for CommentView<'a> {
    fn from(c: &'a Comment) -> Self {
        CommentView {
            id: c.id,
            post_id: c.post_id,
            author: &c.author,
            body: c.body.as_str(),
            created_at: c.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = Post)]
pub struct PostView<'a> {
    #[schema(value_type = String, format = Uuid)]
    pub id: PostId,
    pub author: &'a User,
    #[schema(value_type = String, example = "Sunset over the bay")]
    pub caption: &'a str,
    /// What the image shows, for people who cannot see it; empty when none was given.
    #[schema(value_type = String, example = "The sun low over a bay, two sailboats in silhouette")]
    pub alt_text: &'a str,
    /// `processing`, `ready` or `failed`.
    #[schema(value_type = String, example = "ready")]
    pub status: &'static str,
    #[schema(value_type = Option<String>)]
    pub failure_reason: Option<&'a str>,
    /// `none`, `grayscale` or `dither`.
    #[schema(value_type = String, example = "none")]
    pub filter: &'static str,
    pub dither_levels: Option<u8>,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "timestamp::serialize")]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "timestamp::serialize")]
    pub updated_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(serialize_with = "timestamp::serialize_option")]
    pub expires_at: Option<Timestamp>,
    pub comment_count: i64,
    pub image: Option<ImageView>,
    /// At most the 2 newest comments, newest first.
    #[schema(value_type = Vec<CommentView>)]
    pub last_comments: Vec<CommentView<'a>>,
}

impl<'a> From<&'a Post> for PostView<'a> {
    fn from(p: &'a Post) -> Self {
        PostView {
            id: p.id,
            author: &p.author,
            caption: p.caption.as_str(),
            alt_text: p.alt_text.as_str(),
            status: p.status.as_str(),
            failure_reason: p.failure_reason.as_deref(),
            filter: p.filter.name(),
            dither_levels: p.filter.levels(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            expires_at: p.expires_at,
            comment_count: p.comment_count,
            image: p.image.as_ref().map(ImageView::from),
            last_comments: p.last_comments.iter().map(CommentView::from).collect(),
        }
    }
}

/// The renderer the stores keep each post's JSON with.
/// `version` must change whenever the JSON `PostView` writes does; the test
/// `post_json_format_is_pinned` fails until it has.
pub const POST_RENDERER: PostRenderer = PostRenderer {
    version: 2,
    render: render_post,
};

/// How a rendering names each author (the post's, its newest comments'): a
/// quote inside a string is escaped, so no text a user wrote can look like it.
const AUTHOR_ID: &str = r#""author":{"id":""#;

/// The users a rendering in `POST_RENDERER`'s format names as authors: the
/// post's and its newest comments'. Found without parsing the JSON, for
/// readers who hide someone (the format is pinned by a test below).
///
/// Searched with `memchr`'s SIMD substring search: a reader who hides
/// someone has every rendering of a page searched (callgrind: std's `str`
/// search cost about 3 instructions per byte of rendering).
pub fn rendered_authors(rendering: &str) -> impl Iterator<Item = crate::UserId> + '_ {
    static AUTHOR: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(AUTHOR_ID));
    AUTHOR.find_iter(rendering.as_bytes()).filter_map(|at| {
        let start = at + AUTHOR_ID.len();
        rendering
            .get(start..start + 36)
            .and_then(|id| id.parse().ok())
    })
}

/// The field a rendering in `POST_RENDERER`'s format ends with.
const LAST_COMMENTS_FIELD: &str = r#""last_comments":"#;

/// A comment among a rendering's newest, as the rendering shows it.
#[derive(Debug, Clone, Copy)]
pub struct ShownComment<'a> {
    pub author: crate::UserId,
    /// Its JSON, to keep as it is when the comments around it change.
    pub json: &'a str,
}

impl ShownComment<'_> {
    /// Its id, read from its JSON (only when asked: most are never needed).
    pub fn id(&self) -> Option<CommentId> {
        self.json.get(7..43)?.parse().ok()
    }
}

/// Where one comment ends and the next begins in a rendering's newest
/// comments: the only place a `}` is followed by `,{"id":"` in the tail of a
/// rendering (a quote in text a user wrote is escaped; an author object is
/// followed by `,"body"`).
const BETWEEN_COMMENTS: &str = r#"},{"id":""#;

/// The newest comments a rendering in `POST_RENDERER`'s format shows,
/// newest first. Found by reading only its last field, without parsing the
/// JSON: for readers who hide someone, every rendering on their page is read
/// (the format is pinned by a test below).
pub fn rendered_last_comments(rendering: &str) -> impl Iterator<Item = ShownComment<'_>> + '_ {
    static BETWEEN: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(BETWEEN_COMMENTS));
    // The array's elements, without its brackets and the post's closing brace.
    let list = last_comments_at(rendering)
        .and_then(|at| rendering.get(at + LAST_COMMENTS_FIELD.len() + 1..rendering.len() - 2))
        .unwrap_or("");
    let mut rest = (!list.is_empty()).then_some(list);
    std::iter::from_fn(move || {
        let here = rest?;
        let json = match BETWEEN.find(here.as_bytes()) {
            Some(at) => {
                rest = Some(&here[at + 2..]);
                &here[..at + 1]
            }
            None => {
                rest = None;
                here
            }
        };
        Some(json)
    })
    .filter_map(|json| {
        let author = rendered_authors(json).next()?;
        Some(ShownComment { author, json })
    })
}

/// Where a rendering in `POST_RENDERER`'s format has its last field: the
/// first match is the field, since the name with its quotes appears nowhere
/// else (in text a user wrote, a quote is escaped). Searched forwards with
/// `memchr`'s SIMD search (callgrind: std's `rfind` cost some 3 instructions
/// per byte of the field and the comments after it, `memmem`'s reverse
/// search, which has no SIMD, more than that).
fn last_comments_at(rendering: &str) -> Option<usize> {
    static FIELD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(LAST_COMMENTS_FIELD));
    FIELD.find(rendering.as_bytes())
}

/// A rendering in `POST_RENDERER`'s format with `last` as its newest
/// comments: `last_comments` is its last field, so it is spliced, not parsed.
pub fn with_last_comments(rendering: &str, last: &[Comment]) -> String {
    with_comments_kept(rendering, &[], last)
}

/// A rendering in `POST_RENDERER`'s format whose newest comments are
/// `kept` (some it shows, as `rendered_last_comments` found them), then
/// `older` ones: the comments kept are not rendered again.
pub fn with_comments_kept(rendering: &str, kept: &[ShownComment<'_>], older: &[Comment]) -> String {
    let at = last_comments_at(rendering).expect("a rendering ends with its last comments");
    let older: Vec<String> = older
        .iter()
        .map(|c| serde_json::to_string(&CommentView::from(c)).expect("comments serialise"))
        .collect();
    let comments = kept
        .iter()
        .map(|c| c.json)
        .chain(older.iter().map(String::as_str));
    let mut out = String::with_capacity(rendering.len());
    out.push_str(&rendering[..at + LAST_COMMENTS_FIELD.len()]);
    out.push('[');
    for (n, json) in comments.enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(json);
    }
    out.push_str("]}");
    out
}

fn render_post(post: &Post) -> String {
    serde_json::to_string(&PostView::from(post)).expect("a post view always serialises")
}

/// A feed post: its position and its stored (or fresh) rendering.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub id: PostId,
    pub author: crate::UserId,
    pub comment_count: i64,
    /// The post as `PostRenderer::render` writes it.
    pub json: String,
}

impl FeedEntry {
    /// Where the entry stands in the feed: what a cursor after it names.
    pub fn position(&self) -> crate::FeedCursor {
        crate::FeedCursor {
            comment_count: self.comment_count,
            post_id: self.id,
        }
    }
}

/// The payload of a `comment.created` event, the same on every backend.
pub fn comment_event(c: &Comment) -> serde_json::Value {
    serde_json::json!({
        "post_id": c.post_id,
        "comment_id": c.id,
        "author": {"id": c.author.id, "username": c.author.username},
        "body": c.body.as_str(),
        "created_at": c.created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AltText, Caption, CommentBody, PostFilter, PostStatus, UserId, Username, from_millis,
    };

    fn sample() -> Post {
        let user = |n: u128, name: &str| User {
            id: UserId::from_uuid(uuid::Uuid::from_u128(n)),
            username: Username::from_trusted(name.into()),
            created_at: from_millis(1_700_000_000_000),
        };
        let post_id = PostId::from_uuid(uuid::Uuid::from_u128(10));
        Post {
            id: post_id,
            caption: Caption::from_trusted("Sunset \"over\" the bay\n".into()),
            alt_text: AltText::from_trusted("Two sailboats".into()),
            status: PostStatus::Ready,
            failure_reason: None,
            filter: PostFilter::from_stored("dither", Some(4)),
            created_at: from_millis(1_700_000_001_000),
            updated_at: from_millis(1_700_000_002_500),
            expires_at: Some(from_millis(1_800_000_000_000)),
            comment_count: 7,
            image: Some(ImageInfo {
                key: "ab".repeat(20),
                width: 600,
                height: 600,
                blurhash: "LEHV6nWB2yk8pyo0adR*.7kCMdnj".into(),
            }),
            last_comments: vec![Comment {
                id: CommentId::from_uuid(uuid::Uuid::from_u128(20)),
                post_id,
                author: user(2, "bob"),
                body: CommentBody::from_trusted("What a view!".into()),
                created_at: from_millis(1_700_000_003_000),
            }],
            author: user(1, "alice"),
            version: 3,
        }
    }

    /// The stores keep posts rendered in this format (see `POST_RENDERER`).
    /// When `PostView` changes, this fails: bump `POST_RENDERER.version` (so
    /// renderings in the old format are not served) and then update the text.
    #[test]
    fn post_json_format_is_pinned() {
        const RENDERED: &str = concat!(
            r#"{"id":"00000000-0000-0000-0000-00000000000a","#,
            r#""author":{"id":"00000000-0000-0000-0000-000000000001","username":"alice","created_at":"2023-11-14T22:13:20Z"},"#,
            r#""caption":"Sunset \"over\" the bay\n","alt_text":"Two sailboats","status":"ready","failure_reason":null,"#,
            r#""filter":"dither","dither_levels":4,"created_at":"2023-11-14T22:13:21Z","#,
            r#""updated_at":"2023-11-14T22:13:22.500Z","expires_at":"2027-01-15T08:00:00Z","#,
            r#""comment_count":7,"image":{"url":"/v1/images/abababababababababababababababababababab.jpg","#,
            r#""width":600,"height":600,"content_type":"image/jpeg","blurhash":"LEHV6nWB2yk8pyo0adR*.7kCMdnj"},"#,
            r#""last_comments":[{"id":"00000000-0000-0000-0000-000000000014","#,
            r#""post_id":"00000000-0000-0000-0000-00000000000a","#,
            r#""author":{"id":"00000000-0000-0000-0000-000000000002","username":"bob","created_at":"2023-11-14T22:13:20Z"},"#,
            r#""body":"What a view!","created_at":"2023-11-14T22:13:23Z"}]}"#,
        );
        let rendered = (POST_RENDERER.render)(&sample());
        assert_eq!((POST_RENDERER.version, rendered.as_str()), (2, RENDERED));
    }

    #[test]
    fn a_renderings_authors_are_found_and_its_newest_comments_replaced() {
        let mut post = sample();
        let rendered = (POST_RENDERER.render)(&post);
        let authors: Vec<u128> = rendered_authors(&rendered)
            .map(|u| u.as_uuid().as_u128())
            .collect();
        assert_eq!(authors, [1, 2], "the post's author, then its comments'");
        let shown: Vec<(u128, u128)> = rendered_last_comments(&rendered)
            .map(|c| {
                (
                    c.id().unwrap().as_uuid().as_u128(),
                    c.author.as_uuid().as_u128(),
                )
            })
            .collect();
        assert_eq!(shown, [(20, 2)], "its comments' only");
        let mut quoted = post.clone();
        quoted.caption = Caption::from_trusted(
            r#""author":{"id":"00000000-0000-0000-0000-000000000009""#.into(),
        );
        let authors: Vec<u128> = rendered_authors(&(POST_RENDERER.render)(&quoted))
            .map(|u| u.as_uuid().as_u128())
            .collect();
        assert_eq!(
            authors,
            [1, 2],
            "text a user wrote is never taken for an author"
        );
        post.last_comments.clear();
        assert_eq!(
            with_last_comments(&rendered, &[]),
            (POST_RENDERER.render)(&post)
        );
        let mut again = sample();
        again.last_comments.push(again.last_comments[0].clone());
        assert_eq!(
            with_last_comments(&rendered, &again.last_comments),
            (POST_RENDERER.render)(&again)
        );
    }

    #[test]
    fn shown_comments_are_split_exactly_and_kept_as_they_are() {
        let comment = |n: u128, author: u128, body: &str| {
            let mut c = sample().last_comments[0].clone();
            c.id = CommentId::from_uuid(uuid::Uuid::from_u128(n));
            c.author.id = UserId::from_uuid(uuid::Uuid::from_u128(author));
            c.body = CommentBody::from_trusted(body.into());
            c
        };
        let tricky = r#"},{"id":"00000000-0000-0000-0000-000000000009","author":{"id":"x"}]}"#;
        let mut post = sample();
        post.last_comments = vec![comment(23, 3, tricky), comment(22, 2, "plain")];
        let rendered = (POST_RENDERER.render)(&post);
        let shown: Vec<ShownComment<'_>> = rendered_last_comments(&rendered).collect();
        let found: Vec<(u128, u128)> = shown
            .iter()
            .map(|c| {
                (
                    c.id().unwrap().as_uuid().as_u128(),
                    c.author.as_uuid().as_u128(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [(23, 3), (22, 2)],
            "text a user wrote splits nothing"
        );
        for (c, kept) in post.last_comments.iter().zip(&shown) {
            assert_eq!(
                kept.json,
                serde_json::to_string(&CommentView::from(c)).unwrap()
            );
        }
        let older = comment(21, 4, "older");
        let mut expected = post.clone();
        expected.last_comments = vec![post.last_comments[1].clone(), older.clone()];
        assert_eq!(
            with_comments_kept(&rendered, &shown[1..], std::slice::from_ref(&older)),
            (POST_RENDERER.render)(&expected)
        );
        expected.last_comments.clear();
        let bare = (POST_RENDERER.render)(&expected);
        assert_eq!(rendered_last_comments(&bare).count(), 0);
        assert_eq!(with_comments_kept(&rendered, &[], &[]), bare);
    }
}
