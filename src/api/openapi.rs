//! `GET /openapi.json`: the OpenAPI 3 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{agents, calls, numbers, ops};

#[derive(OpenApi)]
#[openapi(
    info(title = "Switchboard", description = "Voice agent runtime — AgentPhone-compatible REST API."),
    paths(
        agents::create, agents::list, agents::get, agents::update, agents::delete, agents::voices, agents::languages,
        agents::attach_number, agents::detach_number,
        numbers::create, numbers::list, numbers::get, numbers::update, numbers::delete,
        calls::list, calls::get, calls::of_agent, calls::end, calls::transcript, calls::transcript_stream, calls::create,
        calls::recording,
        crate::webhook::api::put, crate::webhook::api::get_one, crate::webhook::api::delete,
        crate::webhook::api::deliveries, crate::webhook::api::test,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags((name = "agents"), (name = "numbers"), (name = "calls"), (name = "webhooks"), (name = "operators"))
)]
pub struct ApiDoc;

/// Declares the `Authorization: Bearer <api key>` scheme every `/v1` route uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
