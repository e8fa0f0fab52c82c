//! Reports, and the moderators' routes (PRODUCT.md §3 Safety).

use axum::Json;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AuthUser, JsonBody, Moderator, PageQuery};
use super::problem::{ApiError, ApiResult};
use super::views::{PageView, page_response};
use domain::safety::{
    AuditEntry, ModerationAction, Report, ReportReason, ReportStatus, ReportTarget, TargetSnapshot,
};
use domain::{ReportId, Timestamp};
use service::{ReportGroup, ReportInput, ResolveInput, Services};

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(file_report))
        .routes(routes!(queue))
        .routes(routes!(resolve))
        .routes(routes!(reinstate))
        .routes(routes!(audit))
        .routes(routes!(block, unblock))
        .routes(routes!(blocks))
}

#[utoipa::path(put, path = "/v1/me/blocks/{username}", tag = "safety", security(("bearer" = [])),
    params(("username" = String, Path, description = "The user to block")),
    responses((status = 204, description = "Blocked (blocking again changes nothing): their posts and comments are hidden from the caller, and they cannot comment on the caller's posts"),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such user", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "One cannot block oneself", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "1,000 blocks already, or rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn block(
    State(s): State<Services>,
    auth: AuthUser,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    s.block(&auth.account(), &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/me/blocks/{username}", tag = "safety", security(("bearer" = [])),
    params(("username" = String, Path, description = "The user to unblock")),
    responses((status = 204, description = "Not blocked (any more)"),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such user", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn unblock(
    State(s): State<Services>,
    auth: AuthUser,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    s.unblock(&auth.account(), &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct BlockList {
    items: Vec<domain::User>,
}

#[utoipa::path(get, path = "/v1/me/blocks", tag = "safety", security(("bearer" = [])),
    responses((status = 200, description = "Whom the caller blocks, most recent first", body = BlockList),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn blocks(
    State(s): State<Services>,
    auth: AuthUser,
) -> ApiResult<Json<BlockList>> {
    let items = s.blocked_users(&auth.account()).await?;
    Ok(Json(BlockList { items }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct TargetRequest {
    /// `post` or `comment`.
    #[serde(rename = "type")]
    #[schema(example = "post")]
    kind: String,
    id: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ReportRequest {
    target: TargetRequest,
    /// spam, harassment, nudity, violence, illegal or other.
    #[schema(example = "spam")]
    reason: String,
    /// 0–1,000 characters for the moderators.
    note: Option<String>,
}

#[utoipa::path(post, path = "/v1/reports", tag = "safety", security(("bearer" = [])), request_body = ReportRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, description = "Reported", body = Report),
        (status = 200, description = "The caller's open report on that target, filed earlier", body = Report),
        (status = 400, description = "Malformed JSON", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such post or comment", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid target type, id, reason or note, or one's own content", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn file_report(
    State(s): State<Services>,
    auth: AuthUser,
    JsonBody(r): JsonBody<ReportRequest>,
) -> ApiResult<Response> {
    let input = ReportInput {
        target_type: r.target.kind,
        target_id: r.target.id,
        reason: r.reason,
        note: r.note,
    };
    let (report, new) = s.file_report(&auth.user, input).await?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
}

/// A target's reports, as the moderation queue shows them.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ReportGroup)]
pub(super) struct ReportGroupView {
    /// The oldest report's id: resolve the group with it.
    #[schema(value_type = String, format = Uuid)]
    id: ReportId,
    target: ReportTarget,
    status: ReportStatus,
    /// The target when it was first reported.
    snapshot: TargetSnapshot,
    report_count: i64,
    reasons: Vec<ReportReason>,
    #[serde(serialize_with = "domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    first_reported_at: Timestamp,
    #[serde(serialize_with = "domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    last_reported_at: Timestamp,
}

impl From<&ReportGroup> for ReportGroupView {
    fn from(g: &ReportGroup) -> Self {
        ReportGroupView {
            id: g.first.id,
            target: g.first.target,
            status: g.first.status,
            snapshot: g.snapshot.clone(),
            report_count: g.report_count,
            reasons: g.reasons.clone(),
            first_reported_at: g.first.created_at,
            last_reported_at: g.last_reported_at,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct QueueQuery {
    status: Option<String>,
}

#[utoipa::path(get, path = "/v1/moderation/reports", tag = "moderation", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "open (default) or resolved"), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "Reported targets, oldest first report first; Link: rel=next", body = PageView<ReportGroupView>),
        (status = 400, description = "Invalid limit or cursor", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not a moderator", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid status", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn queue(
    State(s): State<Services>,
    _moderator: Moderator,
    Query(q): Query<QueueQuery>,
    OriginalUri(uri): OriginalUri,
    page: PageQuery,
) -> ApiResult<Response> {
    let groups = s
        .report_queue(q.status.as_deref(), page.cursor.as_deref(), page.limit)
        .await?;
    Ok(page_response(&uri, &groups, ReportGroupView::from))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct ResolveRequest {
    /// dismiss, remove or suspend.
    #[schema(example = "remove")]
    action: String,
    note: Option<String>,
    /// With `remove` or `suspend` of a post: refuse the same original bytes from now on.
    #[serde(default)]
    ban_image: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Resolved {
    action: ModerationAction,
    target: ReportTarget,
    /// Open reports on the target this closed.
    reports_closed: u64,
}

#[utoipa::path(post, path = "/v1/moderation/reports/{id}/resolve", tag = "moderation", security(("bearer" = [])), request_body = ResolveRequest,
    params(("id" = String, Path, description = "A report id (a queue item's id)")),
    responses((status = 200, description = "Done; every open report on the target is closed", body = Resolved),
        (status = 400, description = "Malformed JSON", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not a moderator", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such report", body = super::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "The report is resolved already", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid action or note", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn resolve(
    State(s): State<Services>,
    Moderator(moderator): Moderator,
    Path(id): Path<String>,
    JsonBody(r): JsonBody<ResolveRequest>,
) -> ApiResult<Json<Resolved>> {
    let id: ReportId = id
        .parse()
        .map_err(|_| ApiError::not_found("no such report"))?;
    let input = ResolveInput {
        action: r.action,
        note: r.note,
        ban_image: r.ban_image,
    };
    let done = s.resolve_report(&moderator.account(), id, input).await?;
    Ok(Json(Resolved {
        action: done.action,
        target: done.target,
        reports_closed: done.reports_closed,
    }))
}

#[utoipa::path(post, path = "/v1/moderation/users/{username}/reinstate", tag = "moderation", security(("bearer" = [])),
    params(("username" = String, Path, description = "A suspended user")),
    responses((status = 200, description = "Reinstated: they can log in again and what they made is shown again", body = domain::User),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not a moderator", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such user", body = super::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "The account is not suspended", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn reinstate(
    State(s): State<Services>,
    Moderator(moderator): Moderator,
    Path(username): Path<String>,
) -> ApiResult<Json<domain::User>> {
    Ok(Json(s.reinstate(&moderator.account(), &username).await?))
}

#[utoipa::path(get, path = "/v1/moderation/audit", tag = "moderation", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "Every moderator and admin action, newest first; Link: rel=next", body = PageView<AuditEntry>),
        (status = 400, description = "Invalid limit or cursor", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not a moderator", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn audit(
    State(s): State<Services>,
    _moderator: Moderator,
    OriginalUri(uri): OriginalUri,
    page: PageQuery,
) -> ApiResult<Response> {
    let entries = s.audit_log(page.cursor.as_deref(), page.limit).await?;
    Ok(page_response(&uri, &entries, Clone::clone))
}
