//! The One Codex API routes: account, document listing and lookup, and the
//! charging `download_uri` POST.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::Shared;
use super::faults::Route;
use super::stats::ApiRoute;
use super::store::Document;

/// The demo account's user id (16 hex, like real ids).
pub(crate) const ACCOUNT_ID: &str = "0cf5de0000000001";
const DEFAULT_PER_PAGE: u64 = 50;
const MAX_PER_PAGE: u64 = 1000;

pub(crate) fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route("/api/v1/account", get(account))
        .route("/api/v1/documents", get(list_documents))
        .route("/api/v1/documents/{id}", get(get_document))
        .route("/api/v1/documents/{id}/download_uri", post(download_uri))
}

/// `{"message": ..., "status": N}` with an optional `Retry-After`.
pub(crate) fn error(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let body = serde_json::json!({"message": message, "status": status.as_u16()});
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

fn injected(status: u16, retry_after: Option<u64>) -> Response {
    let message = match status {
        401 => "Not logged in",
        402 => "Downloads require a premium account",
        403 => "You are not authorized to access this resource",
        404 => "Not found",
        429 => "Too many requests, please slow down",
        _ => "Internal server error",
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, message, retry_after)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not found", None)
}

fn not_logged_in() -> Response {
    error(StatusCode::UNAUTHORIZED, "Not logged in", None)
}

/// `X-API-Key: KEY`, `Authorization: Basic base64(KEY:)` or `Authorization: Bearer KEY`.
fn authorized(headers: &HeaderMap, key: &str) -> bool {
    if let Some(v) = headers.get("x-api-key") {
        return v.as_bytes() == key.as_bytes();
    }
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let (scheme, cred) = auth.trim().split_once(' ').unwrap_or((auth, ""));
    let cred = cred.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        cred == key
    } else if scheme.eq_ignore_ascii_case("basic") {
        base64_decode(cred).is_some_and(|d| d == format!("{key}:").as_bytes())
    } else {
        false
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// `http://HOST` from the request's Host header (the address the client used).
pub(crate) fn origin(headers: &HeaderMap, shared: &Shared) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if !host.is_empty() => format!("http://{host}"),
        _ => shared.base_url.clone(),
    }
}

#[derive(Serialize)]
struct Ref {
    #[serde(rename = "$ref")]
    r#ref: String,
}

/// Exactly the fields of the real API's document objects.
#[derive(Serialize)]
struct DocumentJson<'a> {
    #[serde(rename = "$uri")]
    uri: String,
    created_at: &'a str,
    description: Option<String>,
    downloaders: [Ref; 0],
    downloads_remaining: Option<u64>,
    filename: &'a str,
    size: Option<u64>,
    uploader: Ref,
    valid_until: Option<String>,
}

impl<'a> DocumentJson<'a> {
    fn new(d: &'a Document) -> Self {
        DocumentJson {
            uri: format!("/api/v1/documents/{}", d.id),
            created_at: &d.created_at,
            description: None,
            downloaders: [],
            downloads_remaining: None,
            filename: &d.filename,
            size: (!d.null_size).then_some(d.size),
            uploader: Ref {
                r#ref: format!("/api/v1/users/{ACCOUNT_ID}"),
            },
            valid_until: None,
        }
    }
}

async fn account(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    shared.stats.api(ApiRoute::Account);
    if let Some((s, r)) = shared.faults.api(Route::Account, None, &shared.stats) {
        return injected(s, r);
    }
    if !authorized(&headers, &shared.api_key) {
        return not_logged_in();
    }
    Json(serde_json::json!({
        "$uri": format!("/api/v1/users/{ACCOUNT_ID}"),
        "email": "demo@ocxfs.invalid",
        "username": null,
    }))
    .into_response()
}

/// One page of a listing: the index range and the last page number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Page {
    pub start: usize,
    pub end: usize,
    pub last_page: u64,
}

pub(crate) fn paginate(total: usize, page: u64, per_page: u64) -> Page {
    let last_page = (total as u64).div_ceil(per_page).max(1);
    let start = (page - 1).saturating_mul(per_page).min(total as u64) as usize;
    let end = (start as u64 + per_page).min(total as u64) as usize;
    Page {
        start,
        end,
        last_page,
    }
}

/// Parses `page` (>= 1) and `per_page` (clamped to 1..=1000).
fn page_params(q: &HashMap<String, String>) -> Result<(u64, u64), String> {
    let num = |name: &str, default: u64| -> Result<u64, String> {
        q.get(name).map_or(Ok(default), |v| {
            v.trim()
                .parse()
                .map_err(|_| format!("{name} must be a positive integer"))
        })
    };
    let page = num("page", 1)?;
    if page == 0 {
        return Err("page must be a positive integer".into());
    }
    Ok((
        page,
        num("per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE),
    ))
}

async fn list_documents(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    shared.stats.api(ApiRoute::List);
    if let Some((s, r)) = shared.faults.api(Route::List, None, &shared.stats) {
        return injected(s, r);
    }
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "Invalid query string", None);
    };
    let (page, per_page) = match page_params(&query) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m, None),
    };
    // Anonymous requests see only public data, of which this account has none.
    let docs = if authorized(&headers, &shared.api_key) {
        shared.store.listing()
    } else {
        &[]
    };
    let p = paginate(docs.len(), page, per_page);
    let body: Vec<DocumentJson> = docs[p.start..p.end]
        .iter()
        .map(|d| DocumentJson::new(d))
        .collect();
    let mut resp = Json(body).into_response();
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(docs.len()));
    if page < p.last_page {
        let url = |n| {
            format!(
                "{}/api/v1/documents?page={n}&per_page={per_page}",
                origin(&headers, &shared)
            )
        };
        let link = format!(
            "<{}>; rel=\"next\", <{}>; rel=\"last\"",
            url(page + 1),
            url(p.last_page)
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(header::LINK, v);
        }
    }
    resp
}

async fn get_document(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared.stats.api(ApiRoute::Get);
    if let Some((s, r)) = shared.faults.api(Route::Get, Some(&id), &shared.stats) {
        return injected(s, r);
    }
    // Without a key a private document looks missing, as on the real API.
    match shared.store.get(&id) {
        Some(d) if authorized(&headers, &shared.api_key) => {
            Json(DocumentJson::new(d)).into_response()
        }
        _ => not_found(),
    }
}

async fn download_uri(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared.stats.post(&id);
    if let Some((s, r)) = shared.faults.api(Route::Post, Some(&id), &shared.stats) {
        return injected(s, r);
    }
    if !authorized(&headers, &shared.api_key) {
        return not_logged_in();
    }
    let Some(doc) = shared.store.get(&id) else {
        return not_found();
    };
    let url = shared
        .signer
        .presign(&origin(&headers, &shared), doc, shared.url_ttl);
    tracing::debug!(id = %doc.id, "issued a download URL");
    Json(serde_json::json!({
        "download_uri": url,
        "expires_in_hours": shared.url_ttl.div_ceil(3600).max(1),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn pagination_maths() {
        assert_eq!(
            paginate(0, 1, 50),
            Page {
                start: 0,
                end: 0,
                last_page: 1
            }
        );
        assert_eq!(
            paginate(120, 1, 50),
            Page {
                start: 0,
                end: 50,
                last_page: 3
            }
        );
        assert_eq!(
            paginate(120, 3, 50),
            Page {
                start: 100,
                end: 120,
                last_page: 3
            }
        );
        assert_eq!(
            paginate(120, 4, 50),
            Page {
                start: 120,
                end: 120,
                last_page: 3
            }
        );
        assert_eq!(
            paginate(100, 2, 50),
            Page {
                start: 50,
                end: 100,
                last_page: 2
            }
        );
        assert_eq!(
            paginate(5, u64::MAX, 1000),
            Page {
                start: 5,
                end: 5,
                last_page: 1
            }
        );
        let q = |pairs: &[(&str, &str)]| {
            page_params(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(q(&[]), Ok((1, 50)));
        assert_eq!(q(&[("page", "3"), ("per_page", "5000")]), Ok((3, 1000)));
        assert_eq!(q(&[("per_page", "0")]), Ok((1, 1)));
        assert!(q(&[("page", "0")]).is_err());
        assert!(q(&[("page", "x")]).is_err());
    }

    #[test]
    fn auth_forms() {
        let key = "0123456789abcdef0123456789abcdef";
        let h = |name: &'static str, v: String| {
            let mut m = HeaderMap::new();
            m.insert(name, HeaderValue::from_str(&v).unwrap());
            m
        };
        assert!(authorized(&h("x-api-key", key.into()), key));
        assert!(!authorized(&h("x-api-key", "nope".into()), key));
        assert!(authorized(
            &h("authorization", format!("Bearer {key}")),
            key
        ));
        // base64("0123456789abcdef0123456789abcdef:")
        let basic = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY6";
        assert!(authorized(
            &h("authorization", format!("Basic {basic}")),
            key
        ));
        assert!(!authorized(&h("authorization", "Basic !!!".into()), key));
        assert!(!authorized(&HeaderMap::new(), key));
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    }

    #[test]
    fn document_json_has_the_fixture_fields() {
        let text = std::fs::read_to_string("/work/shared/reference/onecodex-api-v1/documents.json")
            .or_else(|_| {
                std::fs::read_to_string("../shared/reference/onecodex-api-v1/documents.json")
            })
            .expect("fixture documents.json");
        let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = fixture[0].as_object().unwrap();
        let doc = Document::new(
            "a375a9e4c1484df1".into(),
            "foobar_report.pdf".into(),
            442139,
            SystemTime::UNIX_EPOCH,
            super::super::store::Source::Memory(bytes::Bytes::new()),
            0,
        );
        let ours = serde_json::to_value(DocumentJson::new(&doc)).unwrap();
        let ours = ours.as_object().unwrap();
        let keys =
            |m: &serde_json::Map<String, serde_json::Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(ours), keys(first));
        for (k, v) in first {
            let o = &ours[k];
            let same_type = match v {
                // Fixture arrays hold references; ours is empty.
                serde_json::Value::Array(_) => o.is_array(),
                serde_json::Value::Object(m) => o.as_object().is_some_and(|o| keys(o) == keys(m)),
                _ => std::mem::discriminant(v) == std::mem::discriminant(o),
            };
            assert!(same_type, "{k}: fixture {v} vs ours {o}");
        }
        assert_eq!(ours["$uri"], first["$uri"]);
        assert_eq!(ours["size"], first["size"]);
        assert!(chrono::DateTime::parse_from_rfc3339(ours["created_at"].as_str().unwrap()).is_ok());
    }
}
