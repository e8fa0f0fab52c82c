//! Posts: creation (multipart upload), reads, the feed, deletion.

use axum::extract::multipart::Field;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::io::{AsyncWriteExt, BufWriter};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::extract::{AuthUser, JsonBody, MaybeUser, PageQuery, post_id};
use super::idempotency::{Claim, json_answer, key_answer, recorded_answer};
use super::problem::{ApiError, ApiResult};
use super::views::{PageView, PostView, if_none_match_hits, next_link};
use domain::idempotency::StoredResponse;
use domain::rendering::FeedEntry;
use domain::{Post, ValidationErrors};
use service::{CachedPage, CreatePost, EditPost, Services, StagedImage};

/// The image may be 100 MiB; the other fields and multipart framing get this much on top.
const MULTIPART_OVERHEAD: u64 = 1024 * 1024;
/// The largest non-image field read into memory.
const MAX_FIELD_BYTES: usize = 16 * 1024;

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(feed, create).layer(DefaultBodyLimit::disable()))
        .routes(routes!(show, edit, remove))
        .routes(routes!(by_user))
}

#[utoipa::path(post, path = "/v1/posts", tag = "posts", security(("bearer" = [])),
    request_body(content(
        (PostForm = "multipart/form-data"),
        (FromUpload = "application/json"))),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    responses(
        (status = 202, description = "Accepted; the image is being processed", body = PostView),
        (status = 201, description = "Created and already processed", body = PostView),
        (status = 400, description = "Malformed body", body = super::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Image over 100 MiB", body = super::problem::Problem, content_type = "application/problem+json"), (status = 415, description = "Not a PNG, JPEG or BMP (by content), or not multipart/JSON", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, unreadable image header, or image over the pixel limit", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn create(
    State(s): State<Services>,
    auth: AuthUser,
    claim: Option<Extension<Claim>>,
    request: Request,
) -> ApiResult<Response> {
    let answer = key_answer(claim, accepted);
    let recorded = answer.is_some();
    let max = service::MAX_IMAGE_BYTES;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max + MULTIPART_OVERHEAD) {
        return Err(ApiError::payload_too_large(max));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let post = if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &s)
            .await
            .map_err(|r| ApiError::bad_request(r.body_text()))?;
        let form = read_form(multipart, &s, max).await?;
        let input = CreatePost {
            caption: form.caption,
            alt_text: form.alt_text,
            expires_in: form.expires_in,
            filter: form.filter,
            dither_levels: form.dither_levels,
        };
        s.create_post(&auth.user, input, form.image, answer).await?
    } else if content_type.starts_with("application/json") {
        let JsonBody(body) = JsonBody::<FromUpload>::from_request(request, &s).await?;
        let input = CreatePost {
            caption: body.caption,
            alt_text: body.alt_text,
            expires_in: body.expires_in,
            filter: body.filter,
            dither_levels: body.dither_levels,
        };
        let upload = body.upload_id.parse().map_err(|_| {
            ApiError::validation(
                ValidationErrors::single("upload_id", "no such finished upload"),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        })?;
        s.create_post_from_upload(&auth.user, input, upload, answer)
            .await?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send multipart/form-data with \"caption\" and \"image\", or JSON with \"upload_id\"",
        ));
    };
    Ok(recorded_answer(accepted(&post), recorded))
}

/// 202 with the post while its image is processed (201 once ready): now, and
/// to every retry with the same key.
fn accepted(post: &Post) -> StoredResponse {
    let status = if post.status == domain::PostStatus::Ready {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    json_answer(
        status,
        Some(format!("/v1/posts/{}", post.id)),
        &PostView::from(post),
    )
}

/// The multipart form that creates a post, as `read_form` reads it.
#[derive(utoipa::ToSchema)]
struct PostForm {
    /// 0–2,200 characters.
    caption: Option<String>,
    /// 0–1,500 characters: what the image shows, for people who cannot see it.
    alt_text: Option<String>,
    /// PNG, JPEG or BMP, up to 100 MiB; recognised by content.
    #[schema(value_type = String, format = Binary)]
    image: StagedImage,
    /// Seconds until the post expires (≥ 1).
    expires_in: Option<i64>,
    /// `none` (default), `grayscale` or `dither`.
    filter: Option<String>,
    /// 2..=16 levels per channel, with `filter=dither` (default 2).
    dither_levels: Option<i64>,
}

/// The JSON form: a finished resumable upload becomes the post's image.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PostFromUpload)]
struct FromUpload {
    #[schema(format = Uuid)]
    upload_id: String,
    caption: Option<String>,
    alt_text: Option<String>,
    expires_in: Option<i64>,
    filter: Option<String>,
    dither_levels: Option<i64>,
}

/// Reads the form, spooling the image to disk as it arrives.
async fn read_form(mut form: Multipart, s: &Services, max: u64) -> ApiResult<PostForm> {
    let (mut caption, mut alt_text, mut filter) = (None, None, None);
    let (mut expires_in, mut dither_levels) = (None, None);
    let mut image = None;
    let mut errors = ValidationErrors::default();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "image" if image.is_some() => {
                errors.push("image", "only one image is allowed per post")
            }
            "image" => image = Some(spool(field, s, max).await?),
            "caption" => caption = Some(small_text(field).await?),
            "alt_text" => alt_text = Some(small_text(field).await?),
            "filter" => filter = Some(small_text(field).await?),
            "expires_in" => {
                expires_in = errors.check("expires_in", integer(field).await?).flatten()
            }
            "dither_levels" => {
                dither_levels = errors
                    .check("dither_levels", integer(field).await?)
                    .flatten()
            }
            _ => drop(small_text(field).await?),
        }
    }
    if image.is_none() {
        errors.push("image", "is required (a PNG, JPEG or BMP file)");
    }
    if !errors.0.is_empty() {
        return Err(ApiError::validation(
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    Ok(PostForm {
        caption,
        alt_text,
        image: image.expect("checked"),
        expires_in,
        filter,
        dither_levels,
    })
}

async fn small_text(mut field: Field<'_>) -> ApiResult<String> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut buf = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        if buf.len() + chunk.len() > MAX_FIELD_BYTES {
            return Err(ApiError::validation(
                ValidationErrors::single(&name, format!("must be at most {MAX_FIELD_BYTES} bytes")),
                StatusCode::UNPROCESSABLE_ENTITY,
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| {
        ApiError::validation(
            ValidationErrors::single(&name, "must be UTF-8 text"),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    })
}

async fn integer(field: Field<'_>) -> ApiResult<Result<Option<i64>, String>> {
    let text = small_text(field).await?;
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(Ok(None));
    }
    Ok(text
        .parse::<i64>()
        .map(Some)
        .map_err(|_| "must be an integer".to_owned()))
}

/// Streams a file field to a temporary file in the staging directory,
/// refusing it as soon as it passes `max` bytes.
async fn spool(mut field: Field<'_>, s: &Services, max: u64) -> ApiResult<StagedImage> {
    let temp = tempfile::NamedTempFile::new_in(&s.settings.staging_dir)
        .map_err(|e| service::ServiceError::Internal(e.into()))?;
    let (file, path) = temp.into_parts();
    let mut out = BufWriter::with_capacity(64 * 1024, tokio::fs::File::from_std(file));
    let mut size: u64 = 0;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::bad_request(e.body_text()))?
    {
        size += chunk.len() as u64;
        if size > max {
            return Err(ApiError::payload_too_large(max));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| service::ServiceError::Internal(e.into()))?;
    }
    out.flush()
        .await
        .map_err(|e| service::ServiceError::Internal(e.into()))?;
    metrics::counter!("upload_bytes_total", "kind" => "multipart").increment(size);
    Ok(StagedImage { file: path, size })
}

#[utoipa::path(get, path = "/v1/posts/{id}", tag = "posts", params(("id" = String, Path)),
    responses((status = 200, description = "The post, with a strong ETag", body = PostView), (status = 304, description = "Not modified (If-None-Match)"),
        (status = 401, description = "Invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such post (or not visible to the caller)", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn show(
    State(s): State<Services>,
    MaybeUser(viewer): MaybeUser,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let post = s.post_for(post_id(&id)?, viewer.as_ref()).await?;
    let etag = HeaderValue::from_str(&post.etag()).expect("hex is a valid header");
    // Only the author sees unfinished posts, so those must not sit in shared caches.
    let cache = HeaderValue::from_static("private, no-cache");
    if if_none_match_hits(&headers, &etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    Ok(with_etag(&post))
}

fn with_etag(post: &Post) -> Response {
    let etag = HeaderValue::from_str(&post.etag()).expect("hex is a valid header");
    let mut response = Json(PostView::from(post)).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    response
}

/// Fields to change; `expires_in: null` removes the expiry.
#[derive(Default, utoipa::ToSchema)]
#[schema(as = PostEdit)]
struct EditBody {
    caption: Option<String>,
    alt_text: Option<String>,
    #[schema(value_type = Option<i64>, nullable = true)]
    expires_in: Option<Option<i64>>,
}

/// `PATCH /v1/posts/{id}` `{caption?, alt_text?, expires_in?}`; `expires_in: null` removes the expiry.
#[utoipa::path(patch, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = EditBody,
    responses((status = 200, description = "Edited; new ETag", body = PostView), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not the author", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such post", body = super::problem::Problem, content_type = "application/problem+json"), (status = 412, description = "If-Match does not match the current ETag", body = super::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "Invalid fields", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn edit(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<Response> {
    let mut errors = ValidationErrors::default();
    let mut input = EditBody::default();
    // Read field by field, rather than by serde, to tell `null` from absent
    // and to name each bad field in the 422.
    for (key, value) in body {
        match (key.as_str(), value) {
            ("caption", serde_json::Value::String(c)) => input.caption = Some(c),
            ("alt_text", serde_json::Value::String(a)) => input.alt_text = Some(a),
            ("expires_in", serde_json::Value::Null) => input.expires_in = Some(None),
            ("expires_in", serde_json::Value::Number(n)) => match n.as_i64() {
                Some(n) => input.expires_in = Some(Some(n)),
                None => errors.push("expires_in", "must be a whole number of seconds or null"),
            },
            ("caption", _) => errors.push("caption", "must be a string"),
            ("alt_text", _) => errors.push("alt_text", "must be a string"),
            ("expires_in", _) => {
                errors.push("expires_in", "must be a whole number of seconds or null")
            }
            (other, _) => errors.push(other, "is not a field of a post that can be edited"),
        }
    }
    let input = EditPost {
        caption: input.caption,
        alt_text: input.alt_text,
        expires_in: input.expires_in,
    };
    if let Err(e) = input.validate(domain::now()) {
        errors.0.extend(e.0);
    }
    if !errors.0.is_empty() {
        return Err(ApiError::validation(
            errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        ));
    }
    let if_match = headers.get(header::IF_MATCH).map(|v| {
        v.to_str()
            .unwrap_or_default()
            .split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
    });
    let post = s
        .edit_post(post_id(&id)?, &auth.user, input, if_match)
        .await?;
    Ok(with_etag(&post))
}

fn page_response(posts: &service::Page<Post>, uri: &axum::http::Uri) -> Response {
    json_page_response(
        page_json(posts),
        next_link(uri, posts.next_cursor.as_deref()),
    )
}

/// A page's JSON body, with its `Link: rel="next"` header when there is one.
fn json_page_response(body: bytes::Bytes, link: Option<HeaderValue>) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Some(link) = link {
        response.headers_mut().insert(header::LINK, link);
    }
    response
}

/// The page's JSON, written into a buffer sized for it up front: a feed page
/// is tens of KB, and growing from axum's small default buffer copied it
/// about ten times over.
fn page_json(posts: &service::Page<Post>) -> bytes::Bytes {
    const BYTES_PER_POST: usize = 2048;
    let mut body = Vec::with_capacity(256 + BYTES_PER_POST * posts.items.len());
    serde_json::to_writer(&mut body, &PageView::of(posts, PostView::from))
        .expect("a page view always serialises");
    body.into()
}

#[utoipa::path(get, path = "/v1/posts", tag = "posts",
    params(("limit" = Option<u32>, Query, description = "1..=100, default 20"), ("cursor" = Option<String>, Query, description = "next_cursor of the previous page")),
    responses((status = 200, description = "Ready, unexpired posts by comment_count desc, then newest; Link: rel=next", body = PageView<PostView>),
        (status = 400, description = "Invalid limit or cursor", body = super::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "Rate limited", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn feed(
    State(s): State<Services>,
    MaybeUser(reader): MaybeUser,
    OriginalUri(uri): OriginalUri,
    page: PageQuery,
) -> ApiResult<Response> {
    // Readers who block someone get pages made for them; the others share the
    // cached first page, which hides accounts deleted or suspended as every read does.
    let hiding = s.hiding(reader.as_ref()).await?;
    let first = page.cursor.is_none() && s.feed_cache.enabled();
    if first && hiding.blocks_no_one() {
        let cached = s
            .first_feed_page(page.limit, |posts| render_page(posts, &uri))
            .await?;
        return Ok(cached_response(cached));
    }
    let posts = if first {
        s.first_feed_page_for(&hiding, page.limit, |posts| render_page(posts, &uri))
            .await?
    } else {
        s.feed_for(&hiding, page.cursor.as_deref(), page.limit)
            .await?
    };
    Ok(json_page_response(
        feed_json(&posts),
        next_link(&uri, posts.next_cursor.as_deref()),
    ))
}

/// A feed page: its posts' stored renderings spliced into the page's JSON as
/// they are (the store keeps them in `PostView`'s format: see `POST_RENDERER`).
/// Written by hand because serde's way to embed ready JSON, `RawValue`, would
/// parse each rendering again to check it.
fn feed_json(posts: &service::Page<FeedEntry>) -> bytes::Bytes {
    let items: usize = posts.items.iter().map(|p| p.json.len() + 1).sum();
    let mut body = Vec::with_capacity(64 + items);
    body.extend_from_slice(b"{\"items\":[");
    for (n, post) in posts.items.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(post.json.as_bytes());
    }
    body.extend_from_slice(b"],\"next_cursor\":");
    serde_json::to_writer(&mut body, &posts.next_cursor).expect("a cursor always serialises");
    body.push(b'}');
    body.into()
}

/// A first feed page rendered once, for the cache.
fn render_page(posts: &service::Page<FeedEntry>, uri: &axum::http::Uri) -> CachedPage {
    CachedPage {
        body: feed_json(posts),
        link: next_link(uri, posts.next_cursor.as_deref())
            .and_then(|v| v.to_str().ok().map(str::to_owned)),
    }
}

fn cached_response(page: CachedPage) -> Response {
    json_page_response(
        page.body,
        page.link.and_then(|l| HeaderValue::from_str(&l).ok()),
    )
}

#[utoipa::path(get, path = "/v1/users/{username}/posts", tag = "posts",
    params(("username" = String, Path), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "The user's ready posts, newest first", body = PageView<PostView>), (status = 400, description = "Invalid limit or cursor", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such user", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn by_user(
    State(s): State<Services>,
    MaybeUser(reader): MaybeUser,
    Path(username): Path<String>,
    OriginalUri(uri): OriginalUri,
    page: PageQuery,
) -> ApiResult<Response> {
    let posts = s
        .posts_by(
            &username,
            reader.as_ref(),
            page.cursor.as_deref(),
            page.limit,
        )
        .await?;
    Ok(page_response(&posts, &uri))
}

#[utoipa::path(delete, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204, description = "Deleted with its comments and images"), (status = 401, description = "Missing or invalid token", body = super::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "Not the author", body = super::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "No such post", body = super::problem::Problem, content_type = "application/problem+json")))]
pub(super) async fn remove(
    State(s): State<Services>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.delete_post(post_id(&id)?, &auth.user).await?;
    Ok(StatusCode::NO_CONTENT)
}
