//! Errors as RFC 9457 problem+json. Handlers return `ApiError`; the edge
//! middleware (see `edge.rs`) serialises the problem with the request id, and
//! turns any other bare error response (axum's own rejections, 404/405) into one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use domain::{FieldError, ValidationErrors};
use service::ServiceError;

/// A problem document, minus the request id, which the edge middleware adds.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    pub kind: String,
    #[schema(value_type = String, example = "Invalid request")]
    pub title: Cow<'static, str>,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            kind: format!("/problems/{slug}"),
            title: Cow::Borrowed(title),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
            errors: Vec::new(),
        }
    }

    /// A problem for a status alone, e.g. from a framework rejection.
    pub fn for_status(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        let slug = title.to_ascii_lowercase().replace([' ', '\''], "-");
        Problem::new(status, &slug, title, detail)
    }
}

/// An error a handler returns; becomes a problem+json response.
#[derive(Debug)]
pub struct ApiError {
    // Boxed: handlers return Result<_, ApiError> everywhere, and a small Err keeps those cheap.
    pub problem: Box<Problem>,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            problem: Box::new(Problem::new(status, slug, title, detail)),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        );
        e.headers.push((
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"imagegram\""),
        ));
        e
    }

    pub fn validation(errors: ValidationErrors, status: StatusCode) -> Self {
        let detail = errors
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut e = Self::new(status, "validation", "Invalid request", detail);
        e.problem.errors = errors.0;
        e
    }

    pub fn payload_too_large(max: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the image must be at most {max} bytes"),
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        use StatusCode as S;
        match e {
            ServiceError::Validation(errors) => {
                ApiError::validation(errors, S::UNPROCESSABLE_ENTITY)
            }
            ServiceError::Unauthorized(m) => ApiError::unauthorized(m),
            ServiceError::Forbidden(m) => ApiError::forbidden(m),
            ServiceError::NotFound(m) => ApiError::not_found(m),
            ServiceError::Conflict(m) => ApiError::new(S::CONFLICT, "conflict", "Conflict", m),
            e @ ServiceError::OffsetMismatch { .. } => ApiError::new(
                S::CONFLICT,
                "offset-mismatch",
                "Upload-Offset mismatch",
                e.to_string(),
            ),
            e @ ServiceError::ChecksumMismatch => ApiError::new(
                S::from_u16(460).expect("460 is a valid status"),
                "checksum-mismatch",
                "Checksum mismatch",
                e.to_string(),
            ),
            ServiceError::Gone(m) => ApiError::new(S::GONE, "gone", "Gone", m),
            e @ ServiceError::PreconditionFailed => ApiError::new(
                S::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
                e.to_string(),
            ),
            e @ ServiceError::BadCursor => ApiError::new(
                S::BAD_REQUEST,
                "bad-cursor",
                "Invalid cursor",
                e.to_string(),
            ),
            e @ ServiceError::UnsupportedImage => ApiError::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-image",
                "Unsupported image format",
                e.to_string(),
            ),
            ServiceError::UnreadableImage(m) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "unreadable-image",
                "Unreadable image",
                m,
            ),
            ServiceError::ImageTooLarge(m) => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "image-too-large",
                "Image dimensions too large",
                m,
            ),
            e @ ServiceError::Suspended => ApiError::new(
                S::FORBIDDEN,
                "suspended",
                "Account suspended",
                e.to_string(),
            ),
            e @ ServiceError::ImageBanned => ApiError::new(
                S::UNPROCESSABLE_ENTITY,
                "image-banned",
                "Image banned",
                e.to_string(),
            ),
            ServiceError::PayloadTooLarge { max } => ApiError::payload_too_large(max),
            ServiceError::TooMany(m) => {
                ApiError::new(S::TOO_MANY_REQUESTS, "too-many", "Too many at once", m)
            }
            ServiceError::Overloaded(m) => {
                let mut e = ApiError::new(S::SERVICE_UNAVAILABLE, "overloaded", "Overloaded", m);
                e.headers
                    .push((header::RETRY_AFTER, HeaderValue::from_static("1")));
                e
            }
            ServiceError::Internal(e) => {
                // Details stay in the log; the client gets the request id to quote.
                tracing::error!(error = ?e, "internal error");
                ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                    "the server failed to handle the request; quote the request id when reporting it",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response.extensions_mut().insert(*self.problem);
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
