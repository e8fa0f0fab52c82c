//! Data exports (PRODUCT.md §3 Accounts).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::AuthUser;
use super::problem::{ApiError, ApiResult};
use domain::export::{Export, ExportStatus};
use domain::{ExportId, Timestamp};
use service::Services;

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(request))
        .routes(routes!(show))
        .routes(routes!(download))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Export)]
pub(super) struct ExportView {
    #[schema(value_type = String, format = Uuid)]
    id: ExportId,
    status: ExportStatus,
    #[serde(serialize_with = "domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    /// After this it is deleted (7 days after it was asked for).
    #[serde(serialize_with = "domain::timestamp::serialize")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
    /// Where the zip downloads (with the bearer token) once `ready`; else null.
    url: Option<String>,
}

impl From<&Export> for ExportView {
    fn from(e: &Export) -> Self {
        ExportView {
            id: e.id,
            status: e.status,
            created_at: e.created_at,
            expires_at: e.expires_at,
            url: e.download_path(),
        }
    }
}

fn export_id(raw: &str) -> Result<ExportId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found("no such export"))
}

#[utoipa::path(post, path = "/v1/me/exports", tag = "accounts", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses((status = 202, description = "Being built; an export.ready event follows. Asked again while one is being built: that one", body = ExportView),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn request(State(s): State<Services>, auth: AuthUser) -> ApiResult<Response> {
    let export = s.request_export(&auth.account()).await?;
    Ok((StatusCode::ACCEPTED, Json(ExportView::from(&export))).into_response())
}

#[utoipa::path(get, path = "/v1/me/exports/{id}", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The export", body = ExportView),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such export of the caller's (or expired)", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn show(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Json<ExportView>> {
    let export = s.export_of(&auth.user, export_id(&id)?).await?;
    Ok(Json(ExportView::from(&export)))
}

#[utoipa::path(get, path = "/v1/me/exports/{id}/download", tag = "accounts", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The zip: account.json, posts.json, comments.json, originals/{post_id}.{png|jpg|bmp}", content_type = "application/zip"),
        (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such export of the caller's, or not ready", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn download(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = export_id(&id)?;
    let local = s.export_zip(&auth.user, id).await?;
    let file = tokio::fs::File::open(local.path())
        .await
        .map_err(|e| service::ServiceError::Internal(e.into()))?;
    let length = file
        .metadata()
        .await
        .map_err(|e| service::ServiceError::Internal(e.into()))?
        .len();
    // Streamed from the file; a temporary copy (object storage) lives as long as the body.
    let stream =
        futures_util::StreamExt::map(tokio_util::io::ReaderStream::new(file), move |chunk| {
            let _keep = &local;
            chunk
        });
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"imagegram-export-{id}.zip\""),
            ),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
