//! Helpers the emulator's integration tests share.

use serde_json::Value;

/// The id of a listed object: the last segment of its `$uri`.
pub fn id_of_uri(v: &Value) -> String {
    v["$uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}
