//! Accounts and sessions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::{AuthUser, JsonBody};
use super::problem::ApiResult;
use crate::domain::User;
use crate::service::{Services, Session};

pub fn router() -> Router<Services> {
    Router::new()
        .route("/v1/users", post(register))
        .route("/v1/sessions", post(login))
        .route("/v1/sessions/current", delete(logout))
        .route("/v1/me", get(me))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct SessionView {
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

async fn register(
    State(s): State<Services>,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let session = s.register(&c.username, c.password).await?;
    Ok((StatusCode::CREATED, Json(SessionView::from(session))))
}

async fn login(
    State(s): State<Services>,
    JsonBody(c): JsonBody<Credentials>,
) -> ApiResult<impl IntoResponse> {
    let session = s.login(&c.username, c.password).await?;
    Ok((StatusCode::CREATED, Json(SessionView::from(session))))
}

async fn logout(State(s): State<Services>, auth: AuthUser) -> ApiResult<StatusCode> {
    s.logout(&auth.token).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(auth: AuthUser) -> Json<User> {
    Json(auth.user)
}
