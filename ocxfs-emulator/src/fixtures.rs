//! The One Codex API response fixtures kept in this crate
//! (`fixtures/onecodex-api-v1/`, see the README there), for tests.

/// The text of fixture `name` (for example `documents.json`).
pub fn read(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/onecodex-api-v1");
    std::fs::read_to_string(format!("{path}/{name}"))
        .unwrap_or_else(|e| panic!("reading fixture {path}/{name}: {e}"))
}

/// Fixture `name`, parsed as JSON.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("parsing fixture {name}: {e}"))
}
