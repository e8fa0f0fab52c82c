//! The HTTP ceiling for load benchmarks: a fixed JSON body of feed-page size,
//! served through the same router and middleware as every route, so a load
//! test can quote the API as a fraction of what the HTTP stack itself does on
//! the machine. Off (404) unless the server runs with `--bench-ceiling-bytes`.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

use super::problem::ApiError;
use crate::service::Services;

pub fn router() -> Router<Services> {
    Router::new().route("/v1/_bench/ceiling", get(ceiling))
}

async fn ceiling(State(s): State<Services>) -> Response {
    if s.bench_ceiling_bytes == 0 {
        return ApiError::not_found("no such resource").into_response();
    }
    static BODY: OnceLock<Bytes> = OnceLock::new();
    let body = BODY.get_or_init(|| {
        let filler = "x".repeat(s.bench_ceiling_bytes.saturating_sub(16));
        Bytes::from(format!("{{\"filler\":\"{filler}\"}}"))
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}
