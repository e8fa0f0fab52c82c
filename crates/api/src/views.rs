//! The JSON representations clients see.

use axum::http::{HeaderMap, HeaderValue, Uri, header};
use serde::Serialize;
use utoipa::ToSchema;

pub use domain::rendering::{CommentView, PostView};
use service::Page;

#[derive(Serialize, ToSchema)]
pub struct PageView<V> {
    pub items: Vec<V>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<V> PageView<V> {
    pub fn of<'a, T>(page: &'a Page<T>, view: impl Fn(&'a T) -> V) -> Self {
        PageView {
            items: page.items.iter().map(view).collect(),
            next_cursor: page.next_cursor.clone(),
        }
    }
}

/// A page as JSON, with its `Link: rel="next"` header when there is one.
pub fn page_response<'a, T, V: Serialize>(
    uri: &Uri,
    page: &'a Page<T>,
    view: impl Fn(&'a T) -> V,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = axum::Json(PageView::of(page, view)).into_response();
    if let Some(link) = next_link(uri, page.next_cursor.as_deref()) {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// `Link: <same path?limit=…&cursor=…>; rel="next"`, keeping the other query parameters.
pub fn next_link(uri: &Uri, next_cursor: Option<&str>) -> Option<HeaderValue> {
    let cursor = next_cursor?;
    let mut query: Vec<(String, String)> = uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .filter(|(k, _)| k != "cursor")
                .collect()
        })
        .unwrap_or_default();
    query.push(("cursor".into(), cursor.into()));
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    HeaderValue::from_str(&format!("<{}?{}>; rel=\"next\"", uri.path(), encoded)).ok()
}

/// Whether `If-None-Match` (any of its lines and tags, weak or strong) names `etag`.
pub fn if_none_match_hits(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag.to_str().unwrap_or_default())
}
