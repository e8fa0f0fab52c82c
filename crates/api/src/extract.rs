//! Extractors that turn raw requests into authenticated users and validated
//! input, rejecting with problem+json.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::problem::ApiError;
use domain::{Limit, PostId, Role, User, ValidationErrors};
use service::{Account, Blocks, Services, Token};

fn bearer(parts: &Parts) -> Result<Option<Token>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not readable"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(Token::from_header(token.trim())))
        }
        _ => Err(ApiError::unauthorized(
            "expected \"Authorization: Bearer <token>\"",
        )),
    }
}

/// A user already authenticated for this request (see `authenticate_once`).
#[derive(Clone)]
pub struct Authenticated {
    pub account: Account,
    pub token: Token,
}

/// The bearer token of a request, if it sends a well-formed one (no judgement on it).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<Token> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| Token::from_header(token.trim()))
}

/// The user a request's bearer token belongs to, looked up once per request:
/// the middlewares and extractors after the first find it in the extensions.
pub async fn authenticate_once(services: &Services, request: &mut Request) -> Option<User> {
    if let Some(known) = request.extensions().get::<Authenticated>() {
        return Some(known.account.user.clone());
    }
    let token = bearer_token(request.headers())?;
    let account = services.authenticate(&token).await.ok()??;
    let user = account.user.clone();
    request
        .extensions_mut()
        .insert(Authenticated { account, token });
    Some(user)
}

/// A signed-in user; the request is rejected with 401 without a valid token.
pub struct AuthUser {
    pub user: User,
    pub role: Role,
    pub blocks: Blocks,
    pub token: Token,
}

impl AuthUser {
    fn from_account(account: Account, token: Token) -> Self {
        AuthUser {
            user: account.user,
            role: account.role,
            blocks: account.blocks,
            token,
        }
    }

    pub fn account(&self) -> Account {
        Account {
            user: self.user.clone(),
            role: self.role,
            blocks: self.blocks.clone(),
        }
    }
}

impl FromRequestParts<Services> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, ApiError> {
        if let Some(known) = parts.extensions.get::<Authenticated>() {
            return Ok(AuthUser::from_account(
                known.account.clone(),
                known.token.clone(),
            ));
        }
        let token = bearer(parts)?
            .ok_or_else(|| ApiError::unauthorized("this call needs a bearer token"))?;
        match services.authenticate(&token).await? {
            Some(account) => Ok(AuthUser::from_account(account, token)),
            None => Err(ApiError::unauthorized(
                "the bearer token is invalid or was revoked",
            )),
        }
    }
}

/// A signed-in admin: 401 without a valid token, 403 for everyone else.
pub struct Admin(pub AuthUser);

impl FromRequestParts<Services> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, ApiError> {
        let auth = AuthUser::from_request_parts(parts, services).await?;
        if auth.role != Role::Admin {
            return Err(ApiError::forbidden("only admins may do this"));
        }
        Ok(Admin(auth))
    }
}

/// A signed-in moderator or admin: 401 without a valid token, 403 for everyone else.
pub struct Moderator(pub AuthUser);

impl FromRequestParts<Services> for Moderator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, ApiError> {
        let auth = AuthUser::from_request_parts(parts, services).await?;
        if !auth.role.moderates() {
            return Err(ApiError::forbidden("only moderators may do this"));
        }
        Ok(Moderator(auth))
    }
}

/// An optional user: no Authorization header means anonymous, but a bad token is still a 401.
pub struct MaybeUser(pub Option<Account>);

impl FromRequestParts<Services> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, services: &Services) -> Result<Self, ApiError> {
        match bearer(parts)? {
            None => Ok(MaybeUser(None)),
            Some(_) => AuthUser::from_request_parts(parts, services)
                .await
                .map(|a| MaybeUser(Some(a.account()))),
        }
    }
}

/// The largest JSON request body (PRODUCT.md §2). Bodies of creating calls are
/// small; the bound keeps one client from making the server buffer gigabytes.
pub const JSON_BODY_MAX: usize = 64 * 1024;

/// `axum::Json` with problem+json rejections, bounded by `JSON_BODY_MAX`
/// whatever the route's own body limit: a declared length over it is refused
/// before any byte is read, a chunked body as soon as it passes it.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| v == "application/json" || v.ends_with("+json"));
        if !is_json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "invalid-json",
                "Unsupported media type",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > JSON_BODY_MAX as u64) {
            return Err(json_too_large());
        }
        let bytes = axum::body::to_bytes(req.into_body(), JSON_BODY_MAX)
            .await
            .map_err(body_error)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let title = match status.as_u16() {
        415 => "Unsupported media type",
        413 => "Payload too large",
        422 => "Invalid request",
        _ => "Malformed JSON",
    };
    ApiError::new(status, "invalid-json", title, r.body_text())
}

fn json_too_large() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload-too-large",
        "Payload too large",
        format!("JSON bodies are at most {JSON_BODY_MAX} bytes"),
    )
}

/// Why a body could not be read: too long, stalled past the idle timeout, or cut off.
pub fn body_error(e: axum::Error) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return json_too_large();
        }
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timed out",
                "no part of the request body arrived within the idle timeout",
            );
        }
        source = err.source();
    }
    ApiError::bad_request("the request body could not be read")
}

/// `limit` and `cursor` of a paginated listing.
#[derive(Debug, Deserialize)]
struct RawPageQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug)]
pub struct PageQuery {
    pub limit: Limit,
    pub cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(raw) =
            axum::extract::Query::<RawPageQuery>::from_request_parts(parts, state)
                .await
                .map_err(|r: QueryRejection| ApiError::bad_request(r.body_text()))?;
        let limit = raw
            .limit
            .as_deref()
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| "must be a whole number from 1 to 100".to_owned())
            })
            .transpose()
            .and_then(Limit::parse)
            .map_err(|m| {
                ApiError::validation(
                    ValidationErrors::single("limit", m),
                    axum::http::StatusCode::BAD_REQUEST,
                )
            })?;
        Ok(PageQuery {
            limit,
            cursor: raw.cursor.filter(|c| !c.is_empty()),
        })
    }
}

/// A post id from a path segment; one that cannot be an id names no post.
pub fn post_id(raw: &str) -> Result<PostId, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found("no such post"))
}
