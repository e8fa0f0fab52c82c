//! `GET /v1/openapi.json`: the OpenAPI 3.1 document, generated from the
//! handlers' annotations and the view types, so it cannot drift from the code.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use service::Services;

/// The multipart form that creates a post.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PostForm {
    /// 0–2,200 characters.
    caption: Option<String>,
    /// PNG, JPEG or BMP, up to 100 MiB; recognised by content.
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
    /// Seconds until the post expires (≥ 1).
    expires_in: Option<i64>,
    /// `none` (default), `grayscale` or `dither`.
    filter: Option<String>,
    /// 2..=16 levels per channel, with `filter=dither` (default 2).
    dither_levels: Option<i64>,
}

/// A post from a finished resumable upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PostFromUpload {
    #[schema(format = Uuid)]
    upload_id: String,
    caption: Option<String>,
    expires_in: Option<i64>,
    filter: Option<String>,
    dither_levels: Option<i64>,
}

/// Fields to change; `expires_in: null` removes the expiry.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PostEditDoc {
    caption: Option<String>,
    #[schema(nullable = true)]
    expires_in: Option<i64>,
}

/// Any status an operation does not list (a bad token on a read, 412 from the
/// tus version check, 415, 429 …) is still a problem document: say so once.
struct DefaultProblem;

impl Modify for DefaultProblem {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = ResponseBuilder::new()
            .description("Any other outcome: an RFC 9457 problem document")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("default".into())
                    .or_insert_with(|| problem.clone().into());
            }
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Imagegram",
        description = "Post images with captions, comment on posts, browse one feed ranked by comment count. \
            Errors are application/problem+json (RFC 9457). Writes need `Authorization: Bearer <token>`. \
            Creating POSTs accept `Idempotency-Key` (kept 24 h). Responses carry `X-Request-Id`, \
            `RateLimit` and `RateLimit-Policy`. See the README for the decisions behind each rule."
    ),
    paths(
        super::accounts::register,
        super::accounts::login,
        super::accounts::logout,
        super::accounts::me,
        super::posts::create,
        super::posts::feed,
        super::posts::show,
        super::posts::edit,
        super::posts::remove,
        super::posts::by_user,
        super::comments::create,
        super::comments::list,
        super::comments::remove,
        super::images::image,
        super::uploads::capabilities,
        super::uploads::create,
        super::uploads::status,
        super::uploads::append,
        super::uploads::terminate,
        super::events::events,
        super::health::healthz,
        super::health::readyz,
        super::metrics::render,
        document,
    ),
    components(schemas(domain::User, domain::FieldError, PostForm, PostFromUpload, PostEditDoc, super::problem::Problem)),
    modifiers(&BearerAuth, &DefaultProblem)
)]
pub struct ApiDoc;

pub fn router() -> Router<Services> {
    Router::new().route("/v1/openapi.json", get(document))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
