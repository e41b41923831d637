//! The documentation names every code and key the software has.

use std::collections::{BTreeMap, BTreeSet};

use nightmarket_wire::ErrorCode;
use serde_json::{Value, json};

fn read(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn protocol_doc_lists_every_error_and_close_code() {
    let doc = read("docs/protocol.md");
    for code in ErrorCode::ALL {
        assert!(
            doc.contains(&format!("`{}`", code.as_str())),
            "docs/protocol.md lacks `{code}`"
        );
    }
    for code in ["1009", "1012", "4000", "4001", "4100"] {
        assert!(
            doc.contains(code),
            "docs/protocol.md lacks close code {code}"
        );
    }
}

#[test]
fn configuration_doc_lists_every_key() {
    let doc = read("docs/configuration.md");
    let defaults: toml::Table = toml::from_str(&read("config/default.toml")).unwrap();
    for (key, value) in &defaults {
        match value {
            toml::Value::Table(t) => {
                for sub in t.keys() {
                    let var = format!("NIGHTMARKET_{}_{}", key.to_uppercase(), sub.to_uppercase());
                    assert!(doc.contains(&var), "docs/configuration.md lacks {var}");
                }
            }
            _ => {
                let var = format!("NIGHTMARKET_{}", key.to_uppercase());
                assert!(doc.contains(&var), "docs/configuration.md lacks {var}");
            }
        }
    }
}

#[test]
fn readme_gives_the_two_commands() {
    let readme = read("README.md");
    assert!(readme.contains("cargo run --release -- demo"));
    assert!(readme.contains("scripts/test"));
}

/// The served OpenAPI document, parsed.
async fn served_document(addr: std::net::SocketAddr) -> serde_json::Value {
    let (status, served) = crate::support::http(addr, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    served
}

/// The operations of a document: (method, path template) → operation.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            ops.insert((method.clone(), path.clone()), op);
        }
    }
    ops
}

/// Every `$ref` of the document, wherever it is.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r);
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// Every route the router serves is in the OpenAPI document with its method, and every
/// documented operation exists. The document is OpenAPI 3 in structure: every `$ref` resolves,
/// every operation has a summary, responses and its path's parameters; a success answered in
/// JSON has an example and a schema derived from a type (a reference, not a bare object).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_router() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let source = std::fs::read_to_string(root.join("crates/server/src/http/mod.rs")).unwrap();
    let mut routed = BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let open = rest.find('"').unwrap();
        let close = open + 1 + rest[open + 1..].find('"').unwrap();
        // axum's catch-all `{*path}` is the OpenAPI template `{path}`.
        let path = rest[open + 1..close].replace("{*", "{");
        let path = path.as_str();
        // The handlers of this route: up to the next `.route(` or the end of the list.
        let end = [".route(", ".fallback("]
            .iter()
            .filter_map(|m| rest.find(m))
            .min()
            .unwrap_or(rest.len());
        let handlers = &rest[close..end];
        for method in ["get", "post", "delete", "put", "patch"] {
            if handlers.contains(&format!("{method}(")) {
                routed.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    assert!(routed.len() > 30, "{routed:?}");

    let server = crate::support::TestServer::start(|_| {}).await;
    let doc = served_document(server.addr).await;
    server.shutdown().await;
    let built: Value = serde_json::from_str(nightmarket_server::http::openapi::document()).unwrap();
    assert_eq!(
        doc, built,
        "the served document is the one built from the types"
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.len() > 50, "{} references", all.len());
    for r in all {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }

    let ops = operations(&doc);
    for ((method, path), op) in &ops {
        assert!(op["summary"].is_string(), "{method} {path}: summary");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.contains_key("default"),
            "{method} {path}: the edge's refusals"
        );
        let templated: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for name in templated {
            let declared = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
            });
            assert!(declared, "{method} {path}: path parameter {name}");
        }
        let ok = responses
            .iter()
            .find(|(s, _)| s.starts_with('2') || s.as_str() == "101")
            .unwrap_or_else(|| panic!("{method} {path}: no success response"));
        if let Some(json) = ok.1["content"].get("application/json")
            && path != "/api/openapi.json"
        {
            assert!(json.get("example").is_some(), "{method} {path}: example");
            let schema = &json["schema"];
            // A type of the wire crate, a list of one, or (the consoles' language files) a map
            // of texts by section and key.
            let derived = schema.get("$ref").is_some()
                || schema["items"].get("$ref").is_some()
                || schema["additionalProperties"]["additionalProperties"]["type"] == "string";
            assert!(derived, "{method} {path}: schema {schema}");
        }
        for (status, response) in responses {
            assert!(
                response["headers"]["x-request-id"].is_object(),
                "{method} {path} {status}: x-request-id"
            );
            if status.starts_with(['4', '5']) || status == "default" {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ApiError",
                    "{method} {path} {status}"
                );
            }
            // A list endpoint documents the paging contract (docs/protocol.md §9).
            let is_list = ok.1["content"]["application/json"]["schema"]["type"] == "array";
            if method == "get" && is_list {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                for name in ["limit", "cursor"] {
                    let named = params.iter().any(|p| {
                        p["name"] == name
                            || p["$ref"] == format!("#/components/parameters/{name}").as_str()
                    });
                    assert!(named, "{method} {path}: the {name} parameter");
                }
                assert!(
                    ok.1["headers"].get("Next-Cursor").is_some(),
                    "{method} {path}: the Next-Cursor header"
                );
            }
        }
    }
    // The error body names its code from the closed list of codes.
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for code in ErrorCode::ALL {
        assert!(
            codes.as_array().unwrap().contains(&json!(code.as_str())),
            "ErrorCode schema lacks {code}"
        );
    }

    let documented: BTreeSet<_> = ops.keys().cloned().collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the OpenAPI document: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "the OpenAPI document has operations the router lacks: {stale:?}"
    );
}

/// Checks bodies against the schemas of one document.
struct Schemas {
    doc: Value,
}

impl Schemas {
    /// The JSON schema of a response; its references resolve inside the document's components.
    fn validator(&self, method: &str, path: &str, status: u16) -> jsonschema::Validator {
        let schema = &self.doc["paths"][path][method]["responses"][status.to_string()]["content"]["application/json"]
            ["schema"];
        assert!(
            !schema.is_null(),
            "{method} {path} {status}: not documented"
        );
        let wrapped = json!({ "allOf": [schema], "components": self.doc["components"] });
        jsonschema::validator_for(&wrapped).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Asserts that `body`, the answer of `method path` with `status`, fits its schema.
    fn check(&self, method: &str, path: &str, status: u16, body: &Value) {
        let v = self.validator(method, path, status);
        let errors: Vec<String> = v.iter_errors(body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {errors:?}\n{body}"
        );
    }
}

/// Real answers of the server fit the schemas the document gives them, and the schemas are
/// strict enough to refuse what the server would never send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_fit_their_schemas() {
    use crate::support::{Market, http};

    let server = crate::support::TestServer::start(|_| {}).await;
    let addr = server.addr;
    let schemas = Schemas {
        doc: served_document(addr).await,
    };
    let market = Market::create(addr, &[250_000, 120_000], 10, 2, true).await;
    let op = &market.operator;
    let show = &market.show;
    let seller = &market.seller_id;
    let product = market.product(0);
    let cases: Vec<(&str, String, &str, Option<&str>, u16)> = vec![
        (
            "get",
            format!("/api/sellers/{seller}"),
            "/api/sellers/{id}",
            None,
            200,
        ),
        ("get", "/api/sellers".into(), "/api/sellers", Some(op), 200),
        (
            "get",
            format!("/api/products/{product}"),
            "/api/products/{id}",
            None,
            200,
        ),
        (
            "get",
            format!("/api/products?seller_id={seller}"),
            "/api/products",
            Some(op),
            200,
        ),
        (
            "get",
            format!("/api/shows/{show}"),
            "/api/shows/{id}",
            None,
            200,
        ),
        ("get", "/api/shows".into(), "/api/shows", None, 200),
        (
            "get",
            format!("/api/shows/{show}/transitions"),
            "/api/shows/{id}/transitions",
            None,
            200,
        ),
        (
            "get",
            format!("/api/shows/{show}/live-stats"),
            "/api/shows/{id}/live-stats",
            Some(op),
            200,
        ),
        (
            "get",
            format!("/api/sellers/{seller}/shows"),
            "/api/sellers/{id}/shows",
            Some(op),
            200,
        ),
        ("get", "/api/me".into(), "/api/me", Some(op), 200),
        ("get", "/readyz".into(), "/readyz", None, 200),
        (
            "get",
            "/web/assets/i18n/vi.json".into(),
            "/web/{path}",
            None,
            200,
        ),
        (
            "post",
            format!("/api/shows/{show}/close"),
            "/api/shows/{id}/close",
            Some(op),
            200,
        ),
        (
            "get",
            "/api/shows/nope".into(),
            "/api/shows/{id}",
            None,
            404,
        ),
        ("get", "/api/sellers".into(), "/api/sellers", None, 401),
        (
            "post",
            format!("/api/shows/{show}/close"),
            "/api/shows/{id}/close",
            Some(op),
            409,
        ),
    ];
    for (method, url, template, auth, want) in cases {
        let (status, body) = http(addr, &method.to_uppercase(), &url, auth, None).await;
        assert_eq!(status, want, "{method} {url}: {body}");
        schemas.check(method, template, status, &body);
    }
    let (status, body) = http(
        addr,
        "POST",
        "/api/invites",
        Some(op),
        Some(&json!({"role": "seller", "subject": seller})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    schemas.check("post", "/api/invites", 201, &body);

    // A body the server would never send is refused: the schemas are the types, not `object`.
    let show_schema = schemas.validator("get", "/api/shows/{id}", 200);
    assert!(!show_schema.is_valid(&json!({})));
    assert!(!show_schema.is_valid(&json!({"id": 1})));
    let error_schema = schemas.validator("get", "/api/shows/{id}", 404);
    assert!(!error_schema.is_valid(&json!({"error": {"code": "no_such_code", "message": "x"}})));
    server.shutdown().await;
}
