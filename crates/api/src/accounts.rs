//! Accounts and sessions.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Admin, AuthUser, JsonBody};
use super::idempotency::{Claim, json_answer, key_answer};
use super::problem::ApiResult;
use domain::idempotency::StoredResponse;
use domain::{Role, Timestamp, User};
use service::{Actor, Services, Session, SessionInfo};

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me, delete_me))
        .routes(routes!(sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(change_password))
        .routes(routes!(set_role))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct Credentials {
    #[schema(example = "alice")]
    username: String,
    password: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
pub(super) struct SessionView {
    user: User,
    token: String,
}

impl From<Session> for SessionView {
    fn from(s: Session) -> Self {
        SessionView {
            token: s.token.as_str().to_owned(),
            user: s.user,
        }
    }
}

/// The answer kept for a keyed sign-up or login: tokens are never stored, so
/// it has none, and a replay carries a token issued afresh (see idempotency.rs).
fn signed_in(user: &User) -> StoredResponse {
    let view = SessionView {
        token: String::new(),
        user: user.clone(),
    };
    json_answer(StatusCode::CREATED, None, &view)
}

#[utoipa::path(post, path = "/v1/users", tag = "accounts", request_body = Credentials,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 201, description = "Account created; the token authenticates later calls", body = SessionView),
        (status = 400, description = "Malformed JSON", body = super::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "Username taken", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid username or password", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn register(
    State(s): State<Services>,
    claim: Option<Extension<Claim>>,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let answer = key_answer(claim, signed_in);
    let session = s.register(&c.username, c.password, answer).await?;
    Ok((StatusCode::CREATED, Json(SessionView::from(session))))
}

#[utoipa::path(post, path = "/v1/sessions", tag = "accounts", request_body = Credentials,
    responses((status = 201, description = "Logged in", body = SessionView),
        (status = 401, description = "Wrong username or password", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "The account is suspended by moderation (/problems/suspended)", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid request", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn login(
    State(s): State<Services>,
    claim: Option<Extension<Claim>>,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let answer = key_answer(claim, signed_in);
    let session = s.login(&c.username, c.password, answer).await?;
    Ok((StatusCode::CREATED, Json(SessionView::from(session))))
}

#[utoipa::path(delete, path = "/v1/sessions/current", tag = "accounts", security(("bearer" = [])),
    responses((status = 204, description = "The token used is revoked"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn logout(State(s): State<Services>, auth: AuthUser) -> ApiResult<StatusCode> {
    s.logout(&auth.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller, with their role.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Me)]
pub(super) struct MeView {
    #[serde(flatten)]
    user: User,
    role: Role,
}

#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The caller and their role", body = MeView), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn me(auth: AuthUser) -> Json<MeView> {
    Json(MeView {
        user: auth.user,
        role: auth.role,
    })
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SessionSummary)]
pub(super) struct SessionSummaryView {
    /// Opaque; names the session for `DELETE /v1/me/sessions/{id}`.
    id: String,
    #[serde(serialize_with = "domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// To the hour.
    #[serde(serialize_with = "domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    last_used_at: Timestamp,
    /// The session this request was made with.
    current: bool,
}

impl From<SessionInfo> for SessionSummaryView {
    fn from(s: SessionInfo) -> Self {
        SessionSummaryView {
            id: s.id,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            current: s.current,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SessionList)]
pub(super) struct SessionListView {
    items: Vec<SessionSummaryView>,
}

#[utoipa::path(get, path = "/v1/me/sessions", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The caller's live sessions, most recently used first (at most 100)", body = SessionListView), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn sessions(
    State(s): State<Services>,
    auth: AuthUser,
) -> ApiResult<Json<SessionListView>> {
    let items = s.sessions_of(&auth.user, &auth.token).await?;
    Ok(Json(SessionListView {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/me/sessions/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path, description = "A session id from GET /v1/me/sessions")),
    responses((status = 204, description = "The session is revoked"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such session of the caller's", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn revoke_session(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.revoke_session(&auth.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct PasswordChange {
    current_password: String,
    new_password: String,
}

#[utoipa::path(put, path = "/v1/me/password", tag = "accounts", security(("bearer" = [])), request_body = PasswordChange,
    responses((status = 204, description = "Changed; every other session of the account is revoked"), (status = 400, description = "Malformed JSON", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Wrong current password, or the new one is invalid", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn change_password(
    State(s): State<Services>,
    auth: AuthUser,
    JsonBody(c): JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    s.change_password(&auth.user, &auth.token, c.current_password, c.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct RoleChange {
    #[schema(example = "moderator")]
    role: String,
}

#[utoipa::path(put, path = "/v1/admin/users/{username}/role", tag = "admin", security(("bearer" = [])), request_body = RoleChange,
    params(("username" = String, Path, description = "The account to change")),
    responses((status = 204, description = "The role is set"), (status = 400, description = "Malformed JSON", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "The caller is not an admin", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such user", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Unknown role", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn set_role(
    State(s): State<Services>,
    Admin(admin): Admin,
    Path(username): Path<String>,
    JsonBody(c): JsonBody<RoleChange>,
) -> ApiResult<StatusCode> {
    s.set_role(&Actor::Staff(&admin.account()), &username, &c.role)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(super) struct AccountDeletion {
    /// The account's password, to confirm.
    password: String,
}

#[utoipa::path(delete, path = "/v1/me", tag = "accounts", security(("bearer" = [])), request_body = AccountDeletion,
    responses((status = 204, description = "Deleted: everything the account made is gone from every read, its sessions are revoked, its username is free; its blobs are purged within minutes"),
        (status = 400, description = "Malformed JSON", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Wrong password", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn delete_me(
    State(s): State<Services>,
    auth: AuthUser,
    JsonBody(d): JsonBody<AccountDeletion>,
) -> ApiResult<StatusCode> {
    s.delete_account(&auth.user, d.password).await?;
    Ok(StatusCode::NO_CONTENT)
}
