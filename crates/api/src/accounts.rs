//! Accounts and sessions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{AuthUser, JsonBody};
use super::idempotency::{Claim, json_answer, key_answer};
use super::problem::ApiResult;
use domain::User;
use domain::idempotency::StoredResponse;
use service::{Services, Session};

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
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
        (status = 401, description = "Wrong username or password", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid request", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
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

#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = domain::User), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn me(auth: AuthUser) -> Json<User> {
    Json(auth.user)
}
