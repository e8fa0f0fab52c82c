//! Comments on visible posts.

use super::{Account, Page, ServiceError, ServiceResult, Services};
use domain::{
    Comment, CommentBody, CommentId, CommentRefusal, IdCursor, Limit, NewComment, PostId, Remover,
    User, ValidationErrors, now,
};
use store::{CommentDeletion, KeyAnswer};

impl Services {
    pub async fn add_comment(
        &self,
        post_id: PostId,
        author: &Account,
        body: String,
        answer: Option<KeyAnswer<Comment>>,
    ) -> ServiceResult<Comment> {
        let body = CommentBody::parse(body).map_err(|m| ValidationErrors::single("body", m))?;
        let new = NewComment {
            post_id,
            author: author.user.clone(),
            body,
            at: now(),
            blocked_by: author.blocks.blocked_by.clone(),
        };
        let created = match self.store.create_comment(new, answer).await? {
            Ok(created) => created,
            Err(CommentRefusal::NoPost) => return Err(ServiceError::NotFound("no such post")),
            Err(CommentRefusal::Blocked) => {
                return Err(ServiceError::Forbidden(
                    "the post's author does not take comments from you",
                ));
            }
        };
        self.feed_cache
            .comment_added(post_id, created.post_comment_count);
        Ok(created.comment)
    }

    pub async fn comments(
        &self,
        post_id: PostId,
        reader: Option<&Account>,
        cursor: Option<&str>,
        limit: Limit,
    ) -> ServiceResult<Page<Comment>> {
        self.post_for(post_id, reader).await?;
        let scope = format!("comments:{post_id}");
        let after = self.id_cursor(cursor, &scope)?;
        let hiding = self.hiding(reader).await?;
        let rows = if hiding.is_empty() {
            self.store.comments(post_id, after, limit.get() + 1).await?
        } else {
            self.visible_comments(post_id, &hiding, after, limit.get() + 1)
                .await?
        };
        Ok(Page::from_overfetch(rows, limit.get(), |c| {
            IdCursor(*c.id.as_bytes()).encode(&scope, &self.cursor_key)
        }))
    }

    pub async fn delete_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: &User,
    ) -> ServiceResult<()> {
        match self
            .remove_comment(post_id, comment_id, &Remover::Author(by.clone()))
            .await?
        {
            CommentDeletion::PostNotFound => Err(ServiceError::NotFound("no such post")),
            CommentDeletion::Deleted => Ok(()),
            CommentDeletion::NotFound => {
                Err(ServiceError::NotFound("no such comment on this post"))
            }
            CommentDeletion::NotAuthor => Err(ServiceError::Forbidden(
                "only the author can delete a comment",
            )),
        }
    }

    /// Deletes a comment if `by` may, keeping its post's count and newest
    /// comments exact; by its author, or by moderation.
    pub(crate) async fn remove_comment(
        &self,
        post_id: PostId,
        comment_id: CommentId,
        by: &Remover,
    ) -> ServiceResult<CommentDeletion> {
        let decision = self
            .store
            .delete_comment(post_id, comment_id, by, now())
            .await?;
        if decision == CommentDeletion::Deleted {
            self.feed_cache.comment_removed(post_id);
        }
        Ok(decision)
    }
}
