//! Comments on a post.

use axum::Extension;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AuthUser, JsonBody, MaybeUser, PageQuery, post_id};
use super::idempotency::{Claim, json_answer, key_answer, recorded_answer};
use super::problem::{ApiError, ApiResult};
use super::views::{CommentView, PageView, page_response};
use domain::idempotency::StoredResponse;
use domain::{Comment, CommentId};
use service::Services;

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(remove))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct NewComment {
    #[schema(example = "What a view!")]
    body: String,
}

#[utoipa::path(post, path = "/v1/posts/{id}/comments", tag = "comments", security(("bearer" = [])), params(("id" = String, Path)),
    request_body = NewComment,
    responses((status = 201, description = "Created", body = CommentView), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "The post's author blocks the caller", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such post (or not ready, or expired)", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Body must be 1–1000 characters", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn create(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
    claim: Option<Extension<Claim>>,
    JsonBody(input): JsonBody<NewComment>,
) -> ApiResult<Response> {
    let answer = key_answer(claim, created);
    let recorded = answer.is_some();
    let comment = s
        .add_comment(post_id(&id)?, &auth.account(), input.body, answer)
        .await?;
    Ok(recorded_answer(created(&comment), recorded))
}

/// 201 with the comment: now, and to every retry with the same key.
fn created(comment: &Comment) -> StoredResponse {
    let location = format!("/v1/posts/{}/comments/{}", comment.post_id, comment.id);
    json_answer(
        StatusCode::CREATED,
        Some(location),
        &CommentView::from(comment),
    )
}

#[utoipa::path(get, path = "/v1/posts/{id}/comments", tag = "comments", params(("id" = String, Path), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "Newest first", body = PageView<CommentView>), (status = 400, description = "Invalid limit or cursor", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such post", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn list(
    State(s): State<Services>,
    MaybeUser(viewer): MaybeUser,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
    page: PageQuery,
) -> ApiResult<Response> {
    let comments = s
        .comments(
            post_id(&id)?,
            viewer.as_ref(),
            page.cursor.as_deref(),
            page.limit,
        )
        .await?;
    Ok(page_response(&uri, &comments, CommentView::from))
}

#[utoipa::path(delete, path = "/v1/posts/{post_id}/comments/{comment_id}", tag = "comments", security(("bearer" = [])),
    params(("post_id" = String, Path), ("comment_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not the comment's author", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such comment on that post", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn remove(
    State(s): State<Services>,
    auth: AuthUser,
    Path((post, comment)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let comment: CommentId = comment
        .parse()
        .map_err(|_| ApiError::not_found("no such comment on this post"))?;
    s.delete_comment(post_id(&post)?, comment, &auth.user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
