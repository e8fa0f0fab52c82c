//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::problem::{ApiError, ApiResult};
use service::Services;

pub fn router() -> Router<Services> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process is alive")))]
pub(super) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Database and blob store answer"), (status = 503, description = "Not ready", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn readyz(State(s): State<Services>) -> ApiResult<Json<Value>> {
    match s.readiness().await {
        Ok(()) => Ok(Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                "the database or the blob store is not answering",
            ))
        }
    }
}
