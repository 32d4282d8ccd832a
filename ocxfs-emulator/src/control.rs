//! The `/_emulator/...` routes tests and benchmarks steer the emulator with
//! (counters, faults, upstream changes; no auth).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use super::Shared;
use super::api::error;
use super::faults::Fault;
use super::store::Kind;

pub(crate) fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/reset-stats", post(reset_stats))
        .route("/_emulator/expire", post(expire))
        .route("/_emulator/documents", post(add_document))
        .route("/_emulator/documents/{id}", delete(delete_document))
        .route("/_emulator/samples/{id}", delete(delete_sample))
        .route("/_emulator/documents/{id}/change", post(change))
        .route("/_emulator/samples/{id}/change", post(change))
        .route("/_emulator/documents/{id}/terms", post(set_terms))
        .route(
            "/_emulator/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats.snapshot()).into_response()
}

async fn reset_stats(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.stats.reset();
    StatusCode::NO_CONTENT
}

async fn expire(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.signer.expire_all();
    StatusCode::NO_CONTENT
}

async fn change(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let Some(doc) = shared.store.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Not found", None);
    };
    let v = doc.change();
    Json(serde_json::json!({"id": doc.id, "generation": v.generation, "etag": v.etag}))
        .into_response()
}

/// Body: any of `{"downloads_remaining": N|null, "valid_until": "RFC 3339"|null,
/// "post_delay_ms": N}`; answers the document's terms as they now are.
async fn set_terms(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some(doc) = shared.store.get_kind(Kind::Document, &id) else {
        return error(StatusCode::NOT_FOUND, "Not found", None);
    };
    let updated = serde_json::from_slice(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| doc.terms.update(&v));
    match updated {
        Ok(terms) => Json(terms).into_response(),
        Err(m) => error(StatusCode::BAD_REQUEST, &m, None),
    }
}

/// Body: `{"filename": "...", "content": "<utf-8 text>"}`; answers 201 `{"id": ...}`.
async fn add_document(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewDocument {
        filename: String,
        #[serde(default)]
        content: String,
    }
    let new: NewDocument = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string(), None),
    };
    if new.filename.is_empty() {
        return error(StatusCode::BAD_REQUEST, "filename must not be empty", None);
    }
    let id = shared
        .store
        .add_document(new.filename, Bytes::from(new.content.into_bytes()));
    (StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response()
}

fn remove(shared: &Shared, kind: Kind, id: &str) -> Response {
    match shared.store.remove(kind, id) {
        true => StatusCode::NO_CONTENT.into_response(),
        false => error(StatusCode::NOT_FOUND, "Not found", None),
    }
}

async fn delete_document(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    remove(&shared, Kind::Document, &id)
}

async fn delete_sample(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    remove(&shared, Kind::Sample, &id)
}

async fn list_faults(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.faults.list()).into_response()
}

/// Body: one fault as JSON (`{"kind": ..., "count"|"probability": ..., ...}`).
async fn add_fault(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed = serde_json::from_slice(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| Fault::parse_json(&v));
    match parsed {
        Ok(f) => {
            let id = shared.faults.add(f);
            (StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response()
        }
        Err(m) => error(StatusCode::BAD_REQUEST, &m, None),
    }
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.faults.clear();
    StatusCode::NO_CONTENT
}
