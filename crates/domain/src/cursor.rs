//! Opaque, tamper-evident pagination cursors. A cursor is the keyset position
//! of the last item returned, authenticated with HMAC-SHA256 under a key
//! shared by every node (kept in the database), and bound to the listing it
//! came from: a cursor from one post's comments is rejected on another's.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::PostId;

type HmacSha256 = Hmac<Sha256>;
const TAG_LEN: usize = 16;

#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl CursorKey {
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(CursorKey)
    }

    fn tag(&self, kind: u8, scope: &[u8], payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&[kind]);
        mac.update(&(scope.len() as u32).to_be_bytes());
        mac.update(scope);
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    fn seal(&self, kind: u8, scope: &[u8], payload: &[u8]) -> String {
        let mut raw = Vec::with_capacity(1 + payload.len() + TAG_LEN);
        raw.push(kind);
        raw.extend_from_slice(payload);
        raw.extend_from_slice(&self.tag(kind, scope, payload));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Returns the payload if `cursor` was sealed by this key for `kind` and `scope`.
    fn open(&self, cursor: &str, kind: u8, scope: &[u8]) -> Option<Vec<u8>> {
        if cursor.len() > 256 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        if raw.len() < 1 + TAG_LEN || raw[0] != kind {
            return None;
        }
        let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
        let payload = &body[1..];
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&[kind]);
        mac.update(&(scope.len() as u32).to_be_bytes());
        mac.update(scope);
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        Some(payload.to_vec())
    }
}

const KIND_FEED: u8 = 1;
const KIND_ID: u8 = 2;

/// Position in the feed, ordered by (comment_count desc, id desc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCursor {
    pub comment_count: i64,
    pub post_id: PostId,
}

impl FeedCursor {
    pub fn encode(&self, key: &CursorKey) -> String {
        let mut payload = Vec::with_capacity(24);
        payload.extend_from_slice(&self.comment_count.to_be_bytes());
        payload.extend_from_slice(self.post_id.as_bytes());
        key.seal(KIND_FEED, b"feed", &payload)
    }

    pub fn decode(cursor: &str, key: &CursorKey) -> Option<Self> {
        let payload = key.open(cursor, KIND_FEED, b"feed")?;
        if payload.len() != 24 {
            return None;
        }
        let comment_count = i64::from_be_bytes(payload[..8].try_into().ok()?);
        let post_id = PostId::from_slice(&payload[8..])?;
        Some(FeedCursor {
            comment_count,
            post_id,
        })
    }
}

/// Position in a newest-first listing keyed by a time-ordered id; `scope`
/// names the listing (e.g. the post whose comments are listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(pub [u8; 16]);

impl IdCursor {
    pub fn encode(&self, scope: &str, key: &CursorKey) -> String {
        key.seal(KIND_ID, scope.as_bytes(), &self.0)
    }

    pub fn decode(cursor: &str, scope: &str, key: &CursorKey) -> Option<Self> {
        let payload = key.open(cursor, KIND_ID, scope.as_bytes())?;
        payload.try_into().ok().map(IdCursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> CursorKey {
        CursorKey([b; 32])
    }

    #[test]
    fn feed_cursor_round_trips() {
        let c = FeedCursor {
            comment_count: 42,
            post_id: PostId::new(),
        };
        let s = c.encode(&key(1));
        assert_eq!(FeedCursor::decode(&s, &key(1)), Some(c));
    }

    #[test]
    fn tampering_is_detected() {
        let c = FeedCursor {
            comment_count: 42,
            post_id: PostId::new(),
        };
        let s = c.encode(&key(1));
        assert_eq!(FeedCursor::decode(&s, &key(2)), None);
        let mut raw = URL_SAFE_NO_PAD.decode(&s).unwrap();
        raw[3] ^= 1;
        assert_eq!(
            FeedCursor::decode(&URL_SAFE_NO_PAD.encode(raw), &key(1)),
            None
        );
        assert_eq!(FeedCursor::decode("not a cursor!", &key(1)), None);
        assert_eq!(FeedCursor::decode("", &key(1)), None);
    }

    #[test]
    fn id_cursors_are_bound_to_their_scope_and_kind() {
        let c = IdCursor([7; 16]);
        let s = c.encode("post-a", &key(1));
        assert_eq!(IdCursor::decode(&s, "post-a", &key(1)), Some(c));
        assert_eq!(IdCursor::decode(&s, "post-b", &key(1)), None);
        assert_eq!(FeedCursor::decode(&s, &key(1)), None);
    }
}
