//! The HTTP ceiling for load benchmarks: a fixed JSON body of feed-page size,
//! served through the same router and middleware as every route, so a load
//! test can quote the API as a fraction of what the HTTP stack itself does on
//! the machine. Built only with the `bench` feature, and off (404) unless the
//! server runs with `--bench-ceiling-bytes`.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use super::problem::ApiError;
use service::Services;

static BODY: OnceLock<Bytes> = OnceLock::new();

/// Serves the ceiling route with a body of `bytes` bytes (once per process).
pub fn set_ceiling_bytes(bytes: usize) {
    let filler = "x".repeat(bytes.saturating_sub(16));
    let _ = BODY.set(Bytes::from(format!("{{\"filler\":\"{filler}\"}}")));
}

pub fn router() -> Router<Services> {
    Router::new().route("/v1/_bench/ceiling", get(ceiling))
}

async fn ceiling() -> Response {
    let Some(body) = BODY.get() else {
        return ApiError::not_found("no such resource").into_response();
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}
