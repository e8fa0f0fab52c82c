//! The web client's routes: the page at `/` and its assets (see the `web` crate).

use axum::Router;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;

use super::problem::{ApiError, ApiResult};

/// The client's own pages: each is the same document, which shows the page its URL names.
const PAGES: &[&str] = &[
    "/",
    "/p/{id}",
    "/u/{username}",
    "/new",
    "/login",
    "/signup",
    "/settings",
    "/notifications",
    "/moderation",
];

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    PAGES
        .iter()
        .fold(Router::new(), |r, page| {
            r.route(page, get(|| async { web::index() }))
        })
        .route("/assets/{*path}", get(asset))
}

async fn asset(Path(path): Path<String>) -> ApiResult<Response> {
    web::asset(&path).ok_or_else(|| ApiError::not_found("no such asset"))
}
