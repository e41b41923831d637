//! The documentation names every code and key the software has.

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
