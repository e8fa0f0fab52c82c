//! Resumable uploads over tus 1.0.0: core protocol plus the creation,
//! creation-with-upload, termination, expiration and checksum (sha1, sha256)
//! extensions. Others' uploads answer 404, like missing ones.

use std::time::{Duration, SystemTime};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::Extension;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::extract::AuthUser;
use super::idempotency::{Claim, key_answer, recorded_answer};
use super::problem::{ApiError, ApiResult};
use domain::idempotency::StoredResponse;
use domain::upload::Upload;
use domain::{Timestamp, UploadId};
use service::{AppendLease, Digest, MAX_IMAGE_BYTES, Services};

const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
const OFFSET_STREAM: &str = "application/offset+octet-stream";

fn h(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(create, capabilities))
        .routes(routes!(status, append, terminate))
        .route_layer(middleware::from_fn(tus_resumable))
        .layer(DefaultBodyLimit::disable())
}

/// Every tus request but OPTIONS must speak our version; every answer says it.
async fn tus_resumable(request: Request, next: Next) -> Response {
    let speaks = request
        .headers()
        .get("tus-resumable")
        .and_then(|v| v.to_str().ok())
        == Some(TUS_VERSION);
    let mut response = if speaks || request.method() == axum::http::Method::OPTIONS {
        next.run(request).await
    } else {
        let mut e = ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "tus-version",
            "Unsupported tus version",
            format!("send Tus-Resumable: {TUS_VERSION}"),
        );
        e.headers
            .push((h("tus-version"), HeaderValue::from_static(TUS_VERSION)));
        e.into_response()
    };
    response
        .headers_mut()
        .insert(h("tus-resumable"), HeaderValue::from_static(TUS_VERSION));
    response
}

#[utoipa::path(options, path = "/v1/uploads", tag = "uploads",
    responses((status = 204, description = "tus capabilities: Tus-Version, Tus-Max-Size, Tus-Extension, Tus-Checksum-Algorithm")))]
pub(super) async fn capabilities() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (h("tus-version"), HeaderValue::from_static(TUS_VERSION)),
            (h("tus-max-size"), HeaderValue::from(MAX_IMAGE_BYTES)),
            (h("tus-extension"), HeaderValue::from_static(EXTENSIONS)),
            (
                h("tus-checksum-algorithm"),
                HeaderValue::from_static("sha1,sha256"),
            ),
        ],
    )
        .into_response()
}

fn upload_id(raw: &str) -> ApiResult<UploadId> {
    raw.parse()
        .map_err(|_| ApiError::not_found("no such upload"))
}

fn http_date(t: Timestamp) -> HeaderValue {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(t.timestamp_millis().max(0) as u64);
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).expect("HTTP dates are valid headers")
}

fn number_header(headers: &HeaderMap, name: &str) -> ApiResult<Option<u64>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a non-negative integer"))),
    }
}

fn checksum(headers: &HeaderMap) -> ApiResult<Option<Digest>> {
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "Upload-Checksum must be \"<algorithm> <base64 digest>\" with sha1 or sha256",
        )
    };
    let (algorithm, digest) = value
        .to_str()
        .map_err(|_| bad())?
        .split_once(' ')
        .ok_or_else(bad)?;
    let digest = STANDARD.decode(digest.trim()).map_err(|_| bad())?;
    match algorithm {
        "sha1" => Ok(Some(Digest::Sha1(digest))),
        "sha256" => Ok(Some(Digest::Sha256(digest))),
        _ => Err(bad()),
    }
}

/// The body must be an offset stream (PATCH always; POST when it carries data).
fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        == Some(OFFSET_STREAM)
}

#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", security(("bearer" = [])),
    params(("Tus-Resumable" = String, Header), ("Upload-Length" = u64, Header), ("Upload-Metadata" = Option<String>, Header)),
    responses((status = 201, description = "Created; Location, Upload-Expires (and Upload-Offset with creation-with-upload)"),
        (status = 400, description = "Missing or invalid Upload-Length", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 412, description = "Unsupported Tus-Resumable", body = super::problem::Problem, content_type = "application/problem+json"), (status = 413, description = "Upload-Length over 104857600", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn create(
    State(s): State<Services>,
    auth: AuthUser,
    claim: Option<Extension<Claim>>,
    request: Request,
) -> ApiResult<Response> {
    let headers = request.headers().clone();
    if headers.contains_key("upload-defer-length") {
        return Err(ApiError::bad_request(
            "Upload-Defer-Length is not supported; send Upload-Length",
        ));
    }
    let length = number_header(&headers, "upload-length")?
        .ok_or_else(|| ApiError::bad_request("Upload-Length is required"))?;
    if length > MAX_IMAGE_BYTES {
        return Err(ApiError::payload_too_large(MAX_IMAGE_BYTES));
    }
    let metadata = headers
        .get("upload-metadata")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let expected = checksum(&headers)?;
    let with_data = number_header(&headers, "content-length")?.unwrap_or(0) > 0
        || headers.contains_key(header::TRANSFER_ENCODING);
    if with_data && !is_offset_stream(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("data sent with the creation must be {OFFSET_STREAM}"),
        ));
    }
    // With data, the answer depends on what arrives; the middleware keeps it then.
    let answer = key_answer(claim.filter(|_| !with_data), created);
    let recorded = answer.is_some();
    let mut upload = s
        .create_upload(&auth.user, length, metadata, answer)
        .await?;
    if with_data {
        // creation-with-upload: the body is the first chunk.
        let lease = s.lease_append(upload.id, &auth.user, 0).await?;
        upload.offset = receive_and_commit(&s, lease, request.into_body(), expected).await?;
    }
    let mut response = recorded_answer(created(&upload), recorded);
    if with_data {
        response
            .headers_mut()
            .insert(h("upload-offset"), HeaderValue::from(upload.offset));
    }
    Ok(response)
}

/// 201 with the upload's place and expiry: now, and to every retry with the same key.
fn created(upload: &Upload) -> StoredResponse {
    let expires = http_date(upload.expires_at);
    StoredResponse {
        status: StatusCode::CREATED.as_u16(),
        headers: vec![
            ("location".into(), format!("/v1/uploads/{}", upload.id)),
            (
                "upload-expires".into(),
                expires.to_str().expect("HTTP dates are ASCII").to_owned(),
            ),
            ("tus-resumable".into(), TUS_VERSION.into()),
        ],
        body: Vec::new(),
    }
}

fn offsets(upload: &Upload) -> [(HeaderName, HeaderValue); 4] {
    [
        (h("upload-offset"), HeaderValue::from(upload.offset)),
        (h("upload-length"), HeaderValue::from(upload.length)),
        (h("upload-expires"), http_date(upload.expires_at)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

#[utoipa::path(head, path = "/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path), ("Tus-Resumable" = String, Header)),
    responses((status = 200, description = "Upload-Offset, Upload-Length, Upload-Expires"), (status = 404, description = "No such upload"), (status = 410, description = "Expired")))]
pub(super) async fn status(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let upload = s.settled_upload(upload_id(&id)?, &auth.user).await?;
    let mut response = (StatusCode::OK, offsets(&upload)).into_response();
    if let Some(m) = upload
        .metadata
        .as_deref()
        .and_then(|m| HeaderValue::from_str(m).ok())
    {
        response.headers_mut().insert(h("upload-metadata"), m);
    }
    Ok(response)
}

#[utoipa::path(patch, path = "/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])),
    params(("id" = String, Path), ("Tus-Resumable" = String, Header), ("Upload-Offset" = u64, Header), ("Upload-Checksum" = Option<String>, Header)),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "Appended; new Upload-Offset"), (status = 409, description = "Offset mismatch, or another PATCH is running", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Past Upload-Length", body = super::problem::Problem, content_type = "application/problem+json"), (status = 415, description = "Wrong Content-Type", body = super::problem::Problem, content_type = "application/problem+json"), (status = 460, description = "Checksum mismatch; chunk discarded", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn append(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let headers = request.headers().clone();
    if !is_offset_stream(&headers) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("PATCH bodies must be {OFFSET_STREAM}"),
        ));
    }
    let offset = number_header(&headers, "upload-offset")?
        .ok_or_else(|| ApiError::bad_request("Upload-Offset is required"))?;
    let expected = checksum(&headers)?;
    let id = upload_id(&id)?;
    // The lock (and the offset check) come before a single byte is read.
    let lease = s.lease_append(id, &auth.user, offset).await?;
    if number_header(&headers, "content-length")?.is_some_and(|n| n > lease.room()) {
        s.abandon_append(&lease).await;
        return Err(ApiError::payload_too_large(MAX_IMAGE_BYTES));
    }
    let new_offset = receive_and_commit(&s, lease, request.into_body(), expected).await?;
    let upload = s.upload(id, &auth.user).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(h("upload-offset"), HeaderValue::from(new_offset));
    response
        .headers_mut()
        .insert(h("upload-expires"), http_date(upload.expires_at));
    Ok(response)
}

#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads", security(("bearer" = [])), params(("id" = String, Path), ("Tus-Resumable" = String, Header)),
    responses((status = 204, description = "Terminated; bytes removed"), (status = 404, description = "No such upload", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn terminate(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.terminate_upload(upload_id(&id)?, &auth.user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Receives the body and commits it as it arrives (see `Services::receive_append`).
/// If the client goes away mid-body, the bytes that did arrive are still
/// committed (writes run to their end: see `server::run_to_completion`) and
/// reported by the next HEAD.
async fn receive_and_commit(
    s: &Services,
    lease: AppendLease,
    body: Body,
    expected: Option<Digest>,
) -> ApiResult<u64> {
    Ok(s.receive_append(lease, body.into_data_stream(), expected)
        .await?)
}

/// `X-HTTP-Method-Override` lets clients behind proxies that only pass GET and
/// POST send PATCH, DELETE and HEAD; it must run before routing.
pub async fn method_override(mut request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST
        && let Some(method) = request
            .headers()
            .get("x-http-method-override")
            .and_then(|v| v.to_str().ok())
            .and_then(|m| {
                axum::http::Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).ok()
            })
    {
        *request.method_mut() = method;
    }
    next.run(request).await
}
