//! Derived JPEGs. Keys name immutable bytes, so responses cache forever.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::problem::{ApiError, ApiResult};
use super::views::if_none_match_hits;
use service::Services;

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(image))
}

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn key_of(file: &str) -> Option<&str> {
    let key = file.strip_suffix(".jpg")?;
    (key.len() == 40
        && key
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some(key)
}

/// GET and HEAD (axum answers HEAD from the GET route, without the body).
#[utoipa::path(get, path = "/v1/images/{file}", tag = "images", params(("file" = String, Path, description = "{key}.jpg")),
    responses((status = 200, description = "The JPEG (also HEAD); immutable", content_type = "image/jpeg"), (status = 206, description = "One byte range"),
        (status = 304, description = "Not modified"), (status = 404, description = "No such image", body = super::problem::Problem, content_type = "application/problem+json"), (status = 416, description = "Range not satisfiable", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn image(
    State(s): State<Services>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let key = key_of(&file).ok_or_else(|| ApiError::not_found("no such image"))?;
    let etag = HeaderValue::from_str(&format!("\"{key}\"")).expect("hex is a valid header");
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ];
    let cached = if_none_match_hits(&headers, &etag);
    let bytes = s
        .derived_image(key)
        .await?
        .ok_or_else(|| ApiError::not_found("no such image"))?;
    if cached {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let jpeg = HeaderValue::from_static("image/jpeg");
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok((common, [(header::CONTENT_TYPE, jpeg)], bytes).into_response());
    };
    let total = bytes.len() as u64;
    let unsatisfiable = || {
        let mut e = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range-not-satisfiable",
            "Range not satisfiable",
            format!("the image is {total} bytes; only one satisfiable byte range is supported"),
        );
        e.headers.push((
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes */{total}")).expect("valid header"),
        ));
        e
    };
    let ranges = http_range_header::parse_range_header(range)
        .and_then(|r| r.validate(total))
        .map_err(|_| unsatisfiable())?;
    let [r] = ranges.as_slice() else {
        return Err(unsatisfiable());
    };
    let (start, end) = (*r.start(), *r.end());
    let content_range =
        HeaderValue::from_str(&format!("bytes {start}-{end}/{total}")).expect("valid header");
    let part = bytes.slice(start as usize..=end as usize);
    Ok((
        StatusCode::PARTIAL_CONTENT,
        common,
        [
            (header::CONTENT_TYPE, jpeg),
            (header::CONTENT_RANGE, content_range),
        ],
        part,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys() {
        let k = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(key_of(&format!("{k}.jpg")), Some(k));
        assert_eq!(key_of(k), None);
        assert_eq!(key_of("../etc.jpg"), None);
        assert_eq!(key_of(&format!("{}.jpg", k.to_uppercase())), None);
    }
}
