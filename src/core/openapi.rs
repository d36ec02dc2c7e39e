//! The parts of the OpenAPI 3.1 document that belong to no module: info, the error envelope,
//! security schemes and the service endpoints. `modules::openapi_document` adds the modules'.

use std::fmt;

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::core::error::{ErrorBody, ErrorCode, ErrorEnvelope};
use crate::core::health;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Avatar Platform API",
        description = "Multi-tenant backend for RAG-powered AI avatars. Errors always use the \
                       envelope `{\"error\": {\"code\", \"message\", \"field\", \"details\"}}`."
    ),
    paths(health::health, health::ready, health::prometheus_metrics),
    components(schemas(ErrorEnvelope, ErrorBody, ErrorCode)),
    modifiers(&SecuritySchemes),
    tags((name = "service", description = "Health, readiness and metrics"))
)]
struct CoreDoc;

/// The error answers any operation can give besides its own, documented on every operation
/// that lacks them once the modules' paths are merged: an unexpected failure (500) or a
/// dependency down (503) anywhere; a missing or bad credential (401) and a role or scope that
/// does not allow it (403) where the operation is secured; an unknown or another tenant's id
/// (404) where the path has one; a malformed body or query (400), a failed validation (422), an
/// oversized body (413) and another content type (415) where there is a body or a query. The
/// OpenAI-compatible routes answer in OpenAI's error shape.
pub fn document_common_errors(document: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{Operation, ParameterIn};
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

    let components = document.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(OPENAI_ERROR.to_owned(), openai_error_schema().into());
    let answer = |schema: &str, description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema)))
                    .build(),
            )
            .build()
    };
    for (path, item) in &mut document.paths.paths {
        let schema = if path.starts_with("/api/v1/openai/") {
            OPENAI_ERROR
        } else {
            "ErrorEnvelope"
        };
        let operations: [Option<&mut Operation>; 5] = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for operation in operations.into_iter().flatten() {
            let secured = operation
                .security
                .as_ref()
                .is_some_and(|requirements| !requirements.is_empty());
            let has_query = operation.parameters.iter().flatten().any(|parameter| {
                matches!(parameter, RefOr::T(parameter) if matches!(parameter.parameter_in, ParameterIn::Query))
            });
            let has_body = operation.request_body.is_some();
            let common = [
                (
                    true,
                    "500",
                    "an unexpected failure (its request id is in `details`)",
                ),
                (
                    true,
                    "503",
                    "a dependency is unavailable; retry after `Retry-After`",
                ),
                (
                    secured,
                    "401",
                    "no credential, or an invalid, expired or revoked one",
                ),
                (
                    secured,
                    "403",
                    "the role or the key's scope does not allow it",
                ),
                (
                    path.contains('{'),
                    "404",
                    "no such resource in the caller's tenancy",
                ),
                (has_body || has_query, "400", "a malformed body or query"),
                (
                    has_body || has_query,
                    "422",
                    "a field failed validation (`field` names it)",
                ),
                (
                    has_body,
                    "413",
                    "the body is larger than this route accepts",
                ),
                (
                    has_body,
                    "415",
                    "the body is not of a content type this route reads",
                ),
            ];
            for (applies, status, description) in common {
                if applies && !operation.responses.responses.contains_key(status) {
                    operation
                        .responses
                        .responses
                        .insert(status.to_owned(), answer(schema, description).into());
                }
            }
        }
    }
}

const OPENAI_ERROR: &str = "OpenAiErrorEnvelope";

/// OpenAI's `{"error": {"message", "type", "param", "code"}}`.
fn openai_error_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let nullable_string =
        || ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]));
    let body = ObjectBuilder::new()
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property("type", ObjectBuilder::new().schema_type(Type::String))
        .property("param", nullable_string())
        .property("code", nullable_string())
        .required("message")
        .required("type");
    ObjectBuilder::new()
        .property("error", body)
        .required("error")
        .into()
}

/// The core document; the modules' paths are merged into it.
pub fn base_document() -> utoipa::openapi::OpenApi {
    let mut document = CoreDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// The documented paths: which one a request's path is (its route, the label of metrics and
/// the access log), and the methods each answers, to tell "no such path" (404) from "not with
/// this method" (405 with `Allow`) for requests no route took.
#[derive(Clone, Default)]
pub struct RouteTable {
    routes: Vec<(Vec<Segment>, Vec<&'static str>)>,
    /// Each documented path, its parameters renamed by position (`{p0}`, `{p1}`...: the tree
    /// takes one name per position), to its template as documented.
    templates: matchit::Router<String>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one segment.
    Parameter,
}

impl RouteTable {
    pub fn from_document(document: &utoipa::openapi::OpenApi) -> RouteTable {
        let routes = document
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path
                    .trim_matches('/')
                    .split('/')
                    .map(|segment| {
                        if segment.starts_with('{') && segment.ends_with('}') {
                            Segment::Parameter
                        } else {
                            Segment::Literal(segment.to_owned())
                        }
                    })
                    .collect();
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, present)| present.then_some(method))
                .collect();
                (segments, methods)
            })
            .collect();
        let mut templates = matchit::Router::new();
        for path in document.paths.paths.keys() {
            let mut position = 0;
            let positional: Vec<String> = path
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') && segment.ends_with('}') {
                        position += 1;
                        format!("{{p{}}}", position - 1)
                    } else {
                        segment.to_owned()
                    }
                })
                .collect();
            // Two documented paths the tree cannot tell apart would be one path documented
            // twice; the first keeps the label.
            let _ = templates.insert(positional.join("/"), path.clone());
        }
        RouteTable { routes, templates }
    }

    /// The documented template `path` is an instance of (`/api/v1/projects/{pid}`), if any.
    pub fn template(&self, path: &str) -> Option<&str> {
        self.templates
            .at(path)
            .ok()
            .map(|matched| matched.value.as_str())
    }

    /// The methods `path` answers, or `None` when no documented route has this path.
    pub fn allowed_methods(&self, path: &str) -> Option<Vec<&'static str>> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut allowed: Vec<&'static str> = self
            .routes
            .iter()
            .filter(|(segments, _)| {
                segments.len() == parts.len()
                    && segments
                        .iter()
                        .zip(&parts)
                        .all(|(segment, part)| match segment {
                            Segment::Literal(literal) => literal == part,
                            Segment::Parameter => !part.is_empty(),
                        })
            })
            .flat_map(|(_, methods)| methods.iter().copied())
            .collect();
        if allowed.is_empty() {
            return None;
        }
        allowed.sort_unstable();
        allowed.dedup();
        Some(allowed)
    }
}
