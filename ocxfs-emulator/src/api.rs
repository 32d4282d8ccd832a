//! The One Codex API routes the emulator answers: account, documents,
//! samples (listing, lookup, the charging `download_uri` POST), projects, tags.

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
use super::store::{Document, Kind, Project, Tag, domain, domain_id};

/// The demo account's user id (16 hex, like real ids).
pub(crate) const ACCOUNT_ID: &str = "0cf5de0000000001";
const DEFAULT_PER_PAGE: u64 = 50;
const MAX_PER_PAGE: u64 = 1000;

pub(crate) fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route("/api/v1/account", get(account))
        .route("/api/v1/documents", get(list_objects::<Documents>))
        .route("/api/v1/documents/{id}", get(get_object::<Documents>))
        .route(
            "/api/v1/documents/{id}/download_uri",
            post(download_uri::<Documents>),
        )
        .route("/api/v1/samples", get(list_objects::<Samples>))
        .route("/api/v1/samples/{id}", get(get_object::<Samples>))
        .route(
            "/api/v1/samples/{id}/download_uri",
            post(download_uri::<Samples>),
        )
        .route("/api/v1/projects", get(list_projects))
        .route("/api/v1/projects/{id}", get(get_project))
        .route("/api/v1/tags", get(list_tags))
        .route("/api/v1/tags/{id}", get(get_tag))
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

/// Count a call to an API route, then answer with an injected error if a
/// fault fires for it.
fn enter(shared: &Shared, counter: ApiRoute, route: Route, id: Option<&str>) -> Option<Response> {
    shared.stats.api(counter);
    injected_fault(shared, route, id)
}

/// The injected error for this route, if a fault fires.
fn injected_fault(shared: &Shared, route: Route, id: Option<&str>) -> Option<Response> {
    shared
        .faults
        .api(route, id, &shared.stats)
        .map(|(status, retry_after)| injected(status, retry_after))
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

fn reference(kind: &str, id: &str) -> Ref {
    Ref {
        r#ref: format!("/api/v1/{kind}/{id}"),
    }
}

/// Exactly the fields of the real API's sample objects (`samples.json`).
#[derive(Serialize)]
struct SampleJson<'a> {
    #[serde(rename = "$uri")]
    uri: String,
    created_at: &'a str,
    filename: Option<&'a str>,
    metadata: Ref,
    owner: Ref,
    primary_classification: Ref,
    project: Option<Ref>,
    size: Option<u64>,
    tags: Vec<Ref>,
    visibility: &'a str,
    status: &'a str,
}

impl<'a> SampleJson<'a> {
    fn new(d: &'a Document) -> Self {
        let info = d.sample.as_ref().expect("a sample");
        SampleJson {
            uri: format!("/api/v1/samples/{}", d.id),
            created_at: &d.created_at,
            filename: (!info.null_filename).then_some(d.filename.as_str()),
            metadata: reference("metadata", &domain_id(domain::METADATA, d.id.as_bytes())),
            owner: reference("users", ACCOUNT_ID),
            primary_classification: reference(
                "classifications",
                &domain_id(domain::CLASSIFICATION, d.id.as_bytes()),
            ),
            project: info.project.as_deref().map(|p| reference("projects", p)),
            size: (!d.null_size).then_some(d.size),
            tags: info.tags.iter().map(|t| reference("tags", t)).collect(),
            visibility: &info.visibility,
            status: &info.status,
        }
    }
}

/// The fields of the real API's project objects.
#[derive(Serialize)]
struct ProjectJson<'a> {
    #[serde(rename = "$uri")]
    uri: String,
    name: Option<&'a str>,
    project_name: Option<&'a str>,
    description: Option<String>,
    owner: Ref,
    public: bool,
    permissions: [Ref; 0],
}

impl<'a> ProjectJson<'a> {
    fn new(p: &'a Project) -> Self {
        ProjectJson {
            uri: format!("/api/v1/projects/{}", p.id),
            name: p.name.as_deref(),
            project_name: p.project_name.as_deref(),
            description: None,
            owner: reference("users", ACCOUNT_ID),
            public: false,
            permissions: [],
        }
    }
}

#[derive(Serialize)]
struct TagJson<'a> {
    #[serde(rename = "$uri")]
    uri: String,
    name: &'a str,
}

impl<'a> TagJson<'a> {
    fn new(t: &'a Tag) -> Self {
        TagJson {
            uri: format!("/api/v1/tags/{}", t.id),
            name: &t.name,
        }
    }
}

impl<'a> DocumentJson<'a> {
    fn new(d: &'a Document) -> Self {
        let terms = d.terms.snapshot();
        DocumentJson {
            uri: format!("/api/v1/documents/{}", d.id),
            created_at: &d.created_at,
            description: None,
            downloaders: [],
            downloads_remaining: terms.downloads_remaining,
            filename: &d.filename,
            size: (!d.null_size).then_some(d.size),
            uploader: Ref {
                r#ref: format!("/api/v1/users/{ACCOUNT_ID}"),
            },
            valid_until: terms.valid_until,
        }
    }
}

async fn account(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(fault) = enter(&shared, ApiRoute::Account, Route::Account, None) {
        return fault;
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

type QueryResult = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Opaque cursor tokens: a listing position, lightly disguised.
const CURSOR_MASK: u64 = 0x6f63_7866_735f_6375;

pub(crate) fn encode_cursor(seq: u64) -> String {
    format!("c{:016x}", seq ^ CURSOR_MASK)
}

fn decode_cursor(token: &str) -> Option<u64> {
    let hex = token.strip_prefix('c')?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|v| v ^ CURSOR_MASK)
}

/// `X-Total-Count` plus, when there is a next page, a `Link` header.
fn page_headers(
    resp: &mut Response,
    headers: &HeaderMap,
    shared: &Shared,
    path: &str,
    total: usize,
    page: u64,
    per_page: u64,
) {
    let last_page = paginate(total, page, per_page).last_page;
    let h = resp.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if page < last_page {
        let url = |n| {
            format!(
                "{}{path}?page={n}&per_page={per_page}",
                origin(headers, shared)
            )
        };
        let link = format!(
            "<{}>; rel=\"next\", <{}>; rel=\"last\"",
            url(page + 1),
            url(last_page)
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(header::LINK, v);
        }
    }
}

/// What differs between the document and the sample routes.
trait Objects {
    const KIND: Kind;
    const PATH: &'static str;
    /// The listing also offers cursor pagination (`X-Pagination-Style: cursor`).
    const CURSOR: bool;
    const LIST: (ApiRoute, Route);
    const GET: (ApiRoute, Route);
    const POST: Route;
    fn json(d: &Document) -> impl Serialize + '_;
    /// The `download_uri` answer for an object the caller may see.
    fn download(shared: &Shared, headers: &HeaderMap, d: &Document) -> Response;
}

struct Documents;
struct Samples;

impl Objects for Documents {
    const KIND: Kind = Kind::Document;
    const PATH: &'static str = "/api/v1/documents";
    const CURSOR: bool = false;
    const LIST: (ApiRoute, Route) = (ApiRoute::List, Route::List);
    const GET: (ApiRoute, Route) = (ApiRoute::Get, Route::Get);
    const POST: Route = Route::Post;

    fn json(d: &Document) -> impl Serialize + '_ {
        DocumentJson::new(d)
    }

    fn download(shared: &Shared, headers: &HeaderMap, d: &Document) -> Response {
        match d.terms.admit(chrono::Utc::now()) {
            Ok(()) => presigned(shared, headers, d),
            Err(refusal) => error(refusal.status(), refusal.message(), None),
        }
    }
}

impl Objects for Samples {
    const KIND: Kind = Kind::Sample;
    const PATH: &'static str = "/api/v1/samples";
    const CURSOR: bool = true;
    const LIST: (ApiRoute, Route) = (ApiRoute::ListSamples, Route::ListSamples);
    const GET: (ApiRoute, Route) = (ApiRoute::GetSample, Route::GetSample);
    const POST: Route = Route::PostSample;

    fn json(d: &Document) -> impl Serialize + '_ {
        SampleJson::new(d)
    }

    fn download(shared: &Shared, headers: &HeaderMap, d: &Document) -> Response {
        if d.available() {
            presigned(shared, headers, d)
        } else {
            error(
                StatusCode::CONFLICT,
                "Sample is not available for download",
                None,
            )
        }
    }
}

fn objects_json<O: Objects>(items: &[Arc<Document>]) -> Response {
    Json(items.iter().map(|d| O::json(d)).collect::<Vec<_>>()).into_response()
}

/// A document or sample listing: page-number pagination, or cursor
/// pagination where the kind offers it.
async fn list_objects<O: Objects>(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    if let Some(fault) = enter(&shared, O::LIST.0, O::LIST.1, None) {
        return fault;
    }
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "Invalid query string", None);
    };
    let (page, per_page) = match page_params(&query) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m, None),
    };
    // Anonymous requests see only public data, of which this account has none.
    let authed = authorized(&headers, &shared.api_key);
    let cursor_style = O::CURSOR
        && headers
            .get("x-pagination-style")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cursor"));
    if cursor_style {
        let from = match query.get("cursor").map(|c| c.trim()) {
            None | Some("") => 0,
            Some(c) => match decode_cursor(c) {
                Some(seq) => seq,
                None => return error(StatusCode::BAD_REQUEST, "Invalid cursor", None),
            },
        };
        let slice = match authed {
            true => shared.store.after(O::KIND, from, per_page as usize),
            false => super::store::Slice {
                items: Vec::new(),
                total: 0,
                next_seq: None,
            },
        };
        let mut resp = objects_json::<O>(&slice.items);
        let h = resp.headers_mut();
        h.insert("x-total-count", HeaderValue::from(slice.total));
        if let Some(next) = slice.next_seq {
            if let Ok(v) = HeaderValue::from_str(&encode_cursor(next)) {
                h.insert("x-next-cursor", v);
            }
        }
        return resp;
    }
    let (items, total) = if authed {
        let start = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
        let slice = shared
            .store
            .range(O::KIND, start, start.saturating_add(per_page as usize));
        (slice.items, slice.total)
    } else {
        (Vec::new(), 0)
    };
    let mut resp = objects_json::<O>(&items);
    page_headers(&mut resp, &headers, &shared, O::PATH, total, page, per_page);
    resp
}

/// A projects or tags listing (page-number pagination).
fn list_fixed<'a, S, T: Serialize>(
    shared: &Shared,
    headers: &HeaderMap,
    query: QueryResult,
    all: &'a [S],
    path: &str,
    to_json: impl Fn(&'a S) -> T,
) -> Response {
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "Invalid query string", None);
    };
    let (page, per_page) = match page_params(&query) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m, None),
    };
    let all = if authorized(headers, &shared.api_key) {
        all
    } else {
        &[]
    };
    let p = paginate(all.len(), page, per_page);
    let body: Vec<T> = all[p.start..p.end].iter().map(to_json).collect();
    let mut resp = Json(body).into_response();
    page_headers(&mut resp, headers, shared, path, all.len(), page, per_page);
    resp
}

async fn list_projects(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    if let Some(fault) = enter(&shared, ApiRoute::ListProjects, Route::ListProjects, None) {
        return fault;
    }
    let all = shared.store.projects();
    list_fixed(
        &shared,
        &headers,
        query,
        all,
        "/api/v1/projects",
        ProjectJson::new,
    )
}

async fn list_tags(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    query: QueryResult,
) -> Response {
    if let Some(fault) = enter(&shared, ApiRoute::ListTags, Route::ListTags, None) {
        return fault;
    }
    list_fixed(
        &shared,
        &headers,
        query,
        shared.store.tags(),
        "/api/v1/tags",
        TagJson::new,
    )
}

async fn get_project(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match shared.store.projects().iter().find(|p| p.id == id) {
        Some(p) if authorized(&headers, &shared.api_key) => {
            Json(ProjectJson::new(p)).into_response()
        }
        _ => not_found(),
    }
}

async fn get_tag(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match shared.store.tags().iter().find(|t| t.id == id) {
        Some(t) if authorized(&headers, &shared.api_key) => Json(TagJson::new(t)).into_response(),
        _ => not_found(),
    }
}

async fn get_object<O: Objects>(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(fault) = enter(&shared, O::GET.0, O::GET.1, Some(&id)) {
        return fault;
    }
    // Without a key a private object looks missing, as on the real API.
    match shared.store.get_kind(O::KIND, &id) {
        Some(d) if authorized(&headers, &shared.api_key) => Json(O::json(&d)).into_response(),
        _ => not_found(),
    }
}

/// The `download_uri` answer for an object the caller may download.
fn presigned(shared: &Shared, headers: &HeaderMap, doc: &Document) -> Response {
    let url = shared.signer.presign(
        &origin(headers, shared),
        shared.storage_base.as_deref(),
        doc,
        shared.url_ttl,
    );
    tracing::debug!(id = %doc.id, "issued a download URL");
    Json(serde_json::json!({
        "download_uri": url,
        "expires_in_hours": shared.url_ttl.div_ceil(3600).max(1),
    }))
    .into_response()
}

/// The charging POST: count it, inject a fault if one is set, check the
/// key, find the object, then answer as its kind does.
async fn download_uri<O: Objects>(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared.stats.post(&id);
    if let Some(fault) = injected_fault(&shared, O::POST, Some(&id)) {
        return fault;
    }
    if !authorized(&headers, &shared.api_key) {
        return not_logged_in();
    }
    let Some(doc) = shared.store.get_kind(O::KIND, &id) else {
        return not_found();
    };
    let delay = doc.terms.post_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    O::download(&shared, &headers, &doc)
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

    use crate::fixtures::json as fixture;

    fn keys(v: &serde_json::Value) -> Vec<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn sample_project_and_tag_json_have_the_fixture_fields() {
        use super::super::store::SampleInfo;
        let samples = fixture("samples.json");
        let all = samples.as_array().unwrap();
        // Every fixture sample has the same key set: ours must be it.
        for f in all {
            assert_eq!(keys(f), keys(&all[0]));
        }
        let with_project = all.iter().find(|s| s["project"].is_object()).unwrap();
        let mut doc = Document::new(
            "7428cca4a3a04a8e".into(),
            "SRR2352185.fastq.gz".into(),
            181687821,
            SystemTime::UNIX_EPOCH,
            super::super::store::Source::Memory(bytes::Bytes::new()),
            0,
        );
        let mut info = SampleInfo::new();
        info.project = Some("4b53797444f846c4".into());
        info.tags = vec!["42997b7a62634985".into(), "fb8e3b693c874f9e".into()];
        doc.sample = Some(info);
        let ours = serde_json::to_value(SampleJson::new(&doc)).unwrap();
        assert_eq!(keys(&ours), keys(with_project));
        for (k, v) in with_project.as_object().unwrap() {
            let o = &ours[k];
            let same_type = match v {
                serde_json::Value::Object(m) => o
                    .as_object()
                    .is_some_and(|o| o.keys().collect::<Vec<_>>() == m.keys().collect::<Vec<_>>()),
                // References, like the fixture's other samples' tags.
                serde_json::Value::Array(_) => o
                    .as_array()
                    .is_some_and(|o| o.len() == 2 && o.iter().all(|x| keys(x) == ["$ref"])),
                _ => std::mem::discriminant(v) == std::mem::discriminant(o),
            };
            assert!(same_type, "{k}: fixture {v} vs ours {o}");
        }
        assert_eq!(ours["$uri"], all[3]["$uri"]);
        assert_eq!(ours["tags"][0], all[3]["tags"][0]);
        assert_eq!(ours["project"], with_project["project"]);
        assert_eq!(ours["status"], "available");
        assert_eq!(ours["visibility"], "private");
        assert!(
            ours["metadata"]["$ref"]
                .as_str()
                .unwrap()
                .starts_with("/api/v1/metadata/")
        );

        let tags = fixture("tags.json");
        let tag = Tag {
            id: "3696f7d507684477".into(),
            name: "high host".into(),
        };
        assert_eq!(serde_json::to_value(TagJson::new(&tag)).unwrap(), tags[0]);

        // projects.json is an empty list: the field set is the documented one.
        let p = Project {
            id: "4b53797444f846c4".into(),
            name: None,
            project_name: Some("demo_project".into()),
        };
        let v = serde_json::to_value(ProjectJson::new(&p)).unwrap();
        let mut k = keys(&v);
        k.sort();
        assert_eq!(
            k,
            [
                "$uri",
                "description",
                "name",
                "owner",
                "permissions",
                "project_name",
                "public"
            ]
        );
        assert_eq!(v["$uri"], "/api/v1/projects/4b53797444f846c4");
        assert_eq!(v["public"], false);
    }

    #[test]
    fn cursors_round_trip() {
        for seq in [0, 1, 999, u64::MAX] {
            let c = encode_cursor(seq);
            assert_eq!(decode_cursor(&c), Some(seq));
        }
        assert_eq!(decode_cursor("1000"), None);
        assert_eq!(decode_cursor("czzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn document_json_has_the_fixture_fields() {
        let fixture = fixture("documents.json");
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
