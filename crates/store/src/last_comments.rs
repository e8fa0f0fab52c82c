//! The stored copy of a post's newest comments, in the same JSON shape on every backend.

use serde::{Deserialize, Serialize};

use domain::{Comment, CommentBody, CommentId, PostId, User, UserId, Username, from_millis};

#[derive(Serialize, Deserialize)]
struct StoredComment {
    id: CommentId,
    body: String,
    at: i64,
    uid: UserId,
    un: String,
    uat: i64,
}

/// How many comments a post carries with it (the domain's rule, as a query limit).
pub const LAST_COMMENTS: u32 = domain::LAST_COMMENTS as u32;

pub fn encode(comments: &[Comment]) -> String {
    let stored: Vec<StoredComment> = comments
        .iter()
        .map(|c| StoredComment {
            id: c.id,
            body: c.body.as_str().to_owned(),
            at: c.created_at.timestamp_millis(),
            uid: c.author.id,
            un: c.author.username.as_str().to_owned(),
            uat: c.author.created_at.timestamp_millis(),
        })
        .collect();
    serde_json::to_string(&stored).expect("plain structs serialise")
}

pub fn decode(post_id: PostId, json: &str) -> serde_json::Result<Vec<Comment>> {
    let stored: Vec<StoredComment> = serde_json::from_str(json)?;
    Ok(stored
        .into_iter()
        .map(|c| Comment {
            id: c.id,
            post_id,
            author: User {
                id: c.uid,
                username: Username::from_trusted(c.un),
                created_at: from_millis(c.uat),
            },
            body: CommentBody::from_trusted(c.body),
            created_at: from_millis(c.at),
        })
        .collect())
}
