//! `GET /v1/openapi.json`: the OpenAPI 3.1 document, generated from the
//! handlers' annotations and the view types, so it cannot drift from the code.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use service::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

/// The document's frame: what no route says. The operations come from the
/// route list (`crate::routes`), so a route cannot be served undocumented.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Imagegram",
        description = "Post images with captions, comment on posts, browse one feed ranked by comment count. \
            Errors are application/problem+json (RFC 9457). Writes need `Authorization: Bearer <token>`. \
            Creating POSTs accept `Idempotency-Key` (kept 24 h). Responses carry `X-Request-Id`, \
            `RateLimit` and `RateLimit-Policy`. See the README for the decisions behind each rule."
    ),
    components(schemas(domain::User, domain::FieldError, super::problem::Problem)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The OpenAPI 3.1 document of every route.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = crate::routes().into_openapi();
    DefaultProblem.modify(&mut doc);
    doc
}

pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new().routes(routes!(serve_document))
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn serve_document() -> Json<utoipa::openapi::OpenApi> {
    static DOCUMENT: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}
