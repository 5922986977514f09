//! `GET /api/openapi.json`: an OpenAPI 3.1 document generated from the route
//! table, so it lists exactly the routes the server registers.

use axum::Json;

use crate::routes::{RouteInfo, route_table};

/// What a route does, for the document; every registered route has one (a
/// test checks), so adding a route without describing it fails the build's
/// tests.
pub(crate) fn summary(method: &str, path: &str) -> Option<&'static str> {
    Some(match (method, path) {
        ("GET", "/api/health") => "Database reachable: 200 {\"status\":\"ok\"}, else 503",
        ("GET", "/api/openapi.json") => "This document",
        ("GET", "/api/auth/csrf") => "Issue the CSRF token (starts a pre-login session)",
        ("POST", "/api/auth/login") => "Sign in with username and password",
        ("POST", "/api/auth/login/totp") => "Second sign-in step: a TOTP code or a recovery code",
        ("POST", "/api/auth/logout") => "End this session on the server",
        ("GET", "/api/auth/me") => "The signed-in user",
        ("POST", "/api/account/password") => "Change password; other sessions end",
        ("POST", "/api/account/sessions/end-others") => "Sign out everywhere else",
        ("GET", "/api/account/tokens") => "List API tokens (never the secret)",
        ("POST", "/api/account/tokens") => "Create an API token (shown once)",
        ("POST", "/api/account/tokens/{id}/revoke") => "Revoke an API token",
        ("GET", "/api/account/totp") => "Two-factor status and recovery codes left",
        ("POST", "/api/account/totp/setup") => "New TOTP secret as otpauth URI and QR (password)",
        ("POST", "/api/account/totp/enable") => "Confirm with a code; recovery codes shown once",
        ("POST", "/api/account/totp/disable") => "Turn two-factor off (password and code)",
        ("POST", "/api/account/totp/recovery-codes") => {
            "New recovery codes replacing the old (password and code; shown once)"
        }
        ("POST", "/api/setup") => "Create the first administrator with a setup token",
        ("GET", "/api/patients") => "Search patients by name prefix, NHS number or birth date",
        ("POST", "/api/patients") => {
            "Create a patient from a FHIR R4 Patient (409 possible-duplicate unless ?possible_duplicates=checked&checked_duplicates=<ids checked>)"
        }
        ("GET", "/api/patients/{id}") => "Read a patient's current version",
        ("PUT", "/api/patients/{id}") => {
            "New version of a patient (If-Match required; 409 possible-duplicate when a changed name or birth date matches another patient, unless ?possible_duplicates=checked&checked_duplicates=<ids checked>)"
        }
        ("GET", "/api/patients/{id}/history") => "Every version of a patient",
        ("GET", "/api/patients/{id}/access-log") => "Who read or changed the record",
        ("GET", "/api/patients/{id}/letters") => "A patient's letters, newest first",
        ("POST", "/api/patients/{id}/letters") => "Write a letter (draft or final)",
        ("GET", "/api/patients/{id}/letters/{letter_id}") => "Read a letter",
        ("PUT", "/api/patients/{id}/letters/{letter_id}") => "Edit a draft (If-Match required)",
        ("POST", "/api/patients/{id}/letters/{letter_id}/finalise") => "Make a draft final",
        ("POST", "/api/patients/{id}/letters/{letter_id}/amend") => {
            "Correct a final letter with a new one"
        }
        ("POST", "/api/patients/{id}/letters/{letter_id}/entered-in-error") => {
            "Mark a letter entered in error, with the reason"
        }
        ("GET", "/api/admin/security-events") => "The security log, newest first",
        ("GET", "/api/admin/alerts") => "Raised alerts",
        ("POST", "/api/admin/users") => "Create an account",
        ("POST", "/api/admin/users/{username}/deactivate") => "Deactivate an account",
        ("POST", "/api/admin/users/{username}/link-patient") => {
            "Link a patient account to its record"
        }
        ("POST", "/api/admin/users/{username}/reset-password") => {
            "Give an account a new, temporary password (its sessions end)"
        }
        ("POST", "/api/admin/users/{username}/reset-totp") => "Reset a user's two-factor sign-in",
        ("POST", "/api/admin/users/{username}/revoke-tokens") => {
            "Revoke every API token of an account (its sessions are kept)"
        }
        ("PUT", "/api/admin/users/{username}/role") => {
            "Give a staff account another role (its sessions end, its API tokens are revoked)"
        }
        _ => return None,
    })
}

/// The changes only a person signed in at a browser may make — to their own
/// account, and every administrator's change to an account
/// ([`crate::extract::BrowserSignedIn`], [`crate::extract::AnySession`]);
/// an API token is refused (a test walks the document and tries each).
fn needs_browser_session(route: &RouteInfo) -> bool {
    route.is_unsafe()
        && (route.path.starts_with("/api/account/") || route.path.starts_with("/api/admin/"))
}

fn operation(route: &RouteInfo) -> serde_json::Value {
    let params: Vec<serde_json::Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| serde_json::json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let mut op = serde_json::json!({
        "summary": summary(route.method, route.path).unwrap_or(""),
        "responses": {
            "default": {"description": "An error as application/problem+json (RFC 9457)",
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        }
    });
    if !params.is_empty() {
        op["parameters"] = serde_json::Value::Array(params);
    }
    if needs_browser_session(route) {
        op["security"] = serde_json::json!([{"session": [], "csrf": []}]);
    } else if route.is_unsafe() {
        op["security"] = serde_json::json!([{"session": [], "csrf": []}, {"bearer": []}]);
    }
    op
}

/// The document, from the routes under `/api`.
pub(crate) fn document() -> serde_json::Value {
    let mut paths = serde_json::Map::new();
    for route in route_table().iter().filter(|r| r.path.starts_with("/api/")) {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| serde_json::json!({}));
        entry[route.method.to_ascii_lowercase()] = operation(route);
    }
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Vellum API", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "vellum-session"},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "bearer": {"type": "http", "scheme": "bearer"}
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status"],
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"},
                        "status": {"type": "integer"}, "detail": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object",
                            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}}
                    }
                }
            }
        }
    })
}

pub(crate) async fn serve() -> Json<serde_json::Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_route_is_described() {
        for r in route_table().iter().filter(|r| r.path.starts_with("/api/")) {
            assert!(
                summary(r.method, r.path).is_some(),
                "{} {} has no summary",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn openapi_document_matches_the_snapshot() {
        let doc = serde_json::to_string_pretty(&document()).unwrap_or_default() + "\n";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.json");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &doc).unwrap_or_default();
        }
        let want = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            doc == want,
            "the OpenAPI document changed; review it and run UPDATE_SNAPSHOTS=1 cargo test -p vellum-web openapi"
        );
    }
}
