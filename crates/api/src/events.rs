//! `GET /v1/events`: Server-Sent Events for the caller — `post.ready` and
//! `post.failed` for their posts, `comment.created` on their posts (by others).

use std::convert::Infallible;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};

use super::extract::AuthUser;
use super::problem::ApiResult;
use service::Services;

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(events))
}

#[utoipa::path(get, path = "/v1/events", tag = "notifications", security(("bearer" = [])), params(("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, description = "text/event-stream: post.ready, post.failed, comment.created", content_type = "text/event-stream"),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid Last-Event-ID", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn events(
    State(s): State<Services>,
    auth: AuthUser,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("invalid"));
    let slot = s.open_event_stream(&auth.user)?;
    let after = s.events_start(&auth.user, last).await?;
    let stream = s.events(slot, after).map(|e| {
        Ok(SseEvent::default()
            .id(e.seq.to_string())
            .event(e.kind)
            .data(e.data))
    });
    // Comments every 15 s keep idle connections open through proxies.
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_secs(15))
            .text("heartbeat"),
    ))
}
