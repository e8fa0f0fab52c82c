//! The HTTP layer: routing, extractors, JSON views and problem+json. It calls
//! the services and never touches storage directly.

mod accounts;
#[cfg(feature = "bench")]
pub mod bench;
mod comments;
mod edge;
mod events;
mod exports;
mod extract;
mod health;
mod idempotency;
mod images;
pub mod metrics;
pub mod openapi;
mod posts;
mod problem;
mod rate_limit;
mod safety;
pub mod server;
mod uploads;
mod views;
mod web_client;

use axum::Router;
use axum::middleware;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;

pub use problem::{ApiError, Problem};
use service::Services;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Every route, each written once: the handlers with their OpenAPI
/// annotations. The router and the OpenAPI document are both made from it.
pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(accounts::routes())
        .merge(posts::routes())
        .merge(comments::routes())
        .merge(images::routes())
        .merge(uploads::routes())
        .merge(safety::routes())
        .merge(exports::routes())
        .merge(events::routes())
        .merge(metrics::routes())
        .merge(openapi::routes())
        .merge(health::routes())
}

/// The router: every route, with the layers every response passes through.
pub fn router(services: Services) -> Router {
    metrics::recorder();
    let routes: Router<Services> = routes().into();
    #[cfg(feature = "bench")]
    let routes = routes.merge(bench::router());
    let routes = routes
        .merge(web_client::router())
        .fallback(|| async { ApiError::not_found("no such resource") })
        .layer(middleware::from_fn_with_state(
            services.clone(),
            idempotency::idempotency,
        ))
        // Outside idempotency: a refused request claims no key.
        .layer(middleware::from_fn_with_state(
            services.clone(),
            rate_limit::rate_limit,
        ))
        .with_state(services)
        // A panic becomes a 500 problem instead of a dropped connection.
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(edge::edge))
        .layer(CompressionLayer::new());
    // Rewriting the method must happen before routing, so it wraps the whole router.
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(uploads::method_override))
}
