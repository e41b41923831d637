//! The documentation names every code and key the software has.

use nightmarket_tests::get;
use nightmarket_wire::ErrorCode;

fn read(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
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

/// Every route the router serves is in the OpenAPI document with its method, and every
/// documented operation exists; each has a summary and a success response with an example
/// where it returns JSON. The served document is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_router() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let source = std::fs::read_to_string(root.join("crates/server/src/http/mod.rs")).unwrap();
    let mut routed = std::collections::BTreeSet::new();
    let mut rest = source.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let open = rest.find('"').unwrap();
        let close = open + 1 + rest[open + 1..].find('"').unwrap();
        // axum's catch-all `{*path}` is the OpenAPI template `{path}`.
        let path = rest[open + 1..close].replace("{*", "{");
        let path = path.as_str();
        // The handlers of this route: up to the next `.route(` or the end of the chain.
        let end = rest.find(".route(").unwrap_or(rest.len());
        let handlers = &rest[close..end];
        for method in ["get", "post", "delete", "put", "patch"] {
            if handlers.contains(&format!("{method}(")) {
                routed.insert((method.to_owned(), path.to_owned()));
            }
        }
    }
    assert!(routed.len() > 30, "{routed:?}");
    let doc: serde_json::Value = serde_json::from_str(nightmarket_server::http::openapi::OPENAPI)
        .expect("openapi.json is JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            assert!(op["summary"].is_string(), "{method} {path}: summary");
            let ok = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(s, _)| s.starts_with('2') || s.as_str() == "101")
                .unwrap_or_else(|| panic!("{method} {path}: no success response"));
            if let Some(json) = ok.1["content"].get("application/json")
                && path != "/api/openapi.json"
            {
                assert!(json.get("example").is_some(), "{method} {path}: example");
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
    let missing: Vec<_> = routed.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "openapi.json documents routes that do not exist: {stale:?}"
    );

    let server = nightmarket_tests::TestServer::start(|_| {}).await;
    let (status, served) = get(server.addr, "/api/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(served, doc);
    server.shutdown().await;
}
