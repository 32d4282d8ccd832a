//! A scriptable hostile server: answers any route with whatever a test's rules say.
//!
//! Tests use it to play a broken or malicious One Codex API or storage: it can
//! redirect anywhere, answer any status, headers and body to any route, loop
//! its `Link` headers, stream endless or slow bodies, lie about sizes and
//! expiries, and answer "Request has expired" forever. It records every
//! request it gets (method, path and query, whether credentials came along),
//! so a second instance with no rules is the "other origin" that must never
//! see the API key.
//!
//! Requests that no rule matches are forwarded to the upstream (usually a
//! regular [`crate::Emulator`]) when there is one, with the upstream's base
//! URL rewritten to the hostile server's own in JSON answers, so that the
//! presigned URLs the upstream hands out lead back through the hostile
//! server; without an upstream they get a 404.
//!
//! Rules are tried in order; the first that matches answers. From Rust:
//!
//! ```no_run
//! # use ocxfs_emulator::hostile::{HostileServer, Rule};
//! let hostile = HostileServer::start(Some("http://127.0.0.1:8080")).unwrap();
//! // The charged POST answers a redirect to another host, every time.
//! hostile.add_rule(
//!     Rule::answer("POST", "/api/v1/documents/", 302)
//!         .prefix()
//!         .header("Location", "http://127.0.0.1:9/steal"),
//! );
//! // Storage says "expired" for the first 5 reads, then the upstream answers.
//! hostile.add_rule(Rule::storage_expired().times(5));
//! let posts = hostile.count("POST", "/api/v1/documents/");
//! # let _ = posts;
//! ```
//!
//! Over HTTP (no credentials needed, never recorded):
//! `PUT /_hostile/rules` with a JSON array of rules replaces them,
//! `POST /_hostile/rules` with one rule appends it, `GET /_hostile/requests`
//! lists what was received, `DELETE /_hostile/requests` forgets it. A rule in
//! JSON: `{"method": "GET", "path": "/api/v1/documents", "status": 200,
//! "headers": [["Link", "<{base}/api/v1/documents?page={n}>; rel=\"next\""]],
//! "body": "[]"}`; every field is optional (see [`Rule`]). In headers and
//! bodies `{base}` is the hostile server's URL, `{n}` the number of the match
//! of this rule (1, 2, …) and, in a repeated item, `{i}` the item's index.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The largest request body forwarded to the upstream.
const MAX_FORWARDED_BODY: usize = 1 << 20;

/// One scripted answer and the requests it applies to.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Rule {
    /// Only this method (any when absent).
    pub method: Option<String>,
    /// The request path equals this (or starts with it, with `prefix`);
    /// any path when absent.
    pub path: Option<String>,
    /// `path` is a prefix rather than the whole path.
    pub prefix: bool,
    /// Only requests whose query string contains this.
    pub query_contains: Option<String>,
    /// Applies to the first N matching requests only, then the next rules do.
    pub times: Option<u64>,
    /// Forward to the upstream instead of answering (with `delay_ms`, a slow
    /// upstream; with `times`, a way to let some requests through).
    pub forward: bool,
    /// The status (200 when absent or 0).
    pub status: u16,
    /// Headers, in order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The body, or the part before the repeated items.
    pub body: String,
    /// The body as raw bytes (they need not be UTF-8), instead of `body`.
    pub bytes: Option<Vec<u8>>,
    /// An endless or huge body, streamed: never held in memory.
    pub repeat: Option<Repeat>,
    /// Wait this long before answering.
    pub delay_ms: u64,
    /// Wait this long before every chunk of the body (slowloris).
    pub chunk_delay_ms: u64,
    /// Drop the connection after this many body bytes (a truncated answer).
    pub abort_after: Option<u64>,
}

/// `Rule::body`, then `count` copies of `item` joined by `separator`, then
/// `suffix`: `[` + `{"id": "{i}"}` × 10⁹ + `]` is a listing of a billion entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Repeat {
    pub item: String,
    pub separator: String,
    pub count: u64,
    pub suffix: String,
}

impl Rule {
    /// Answer `status` with an empty body to `method` on `path`.
    pub fn answer(method: &str, path: &str, status: u16) -> Rule {
        Rule {
            method: Some(method.to_owned()),
            path: Some(path.to_owned()),
            status,
            ..Rule::default()
        }
    }

    /// A redirect (302) of `method` on `path` to `location`.
    pub fn redirect(method: &str, path: &str, location: &str) -> Rule {
        Rule::answer(method, path, 302).header("Location", location)
    }

    /// Every storage read (`GET /storage/...`) answers S3's
    /// "Request has expired", whatever the URL.
    pub fn storage_expired() -> Rule {
        Rule::answer("GET", "/storage/", 403)
            .prefix()
            .header("Content-Type", "application/xml")
            .body(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                 <Message>Request has expired</Message><RequestId>hostile</RequestId></Error>",
            )
    }

    /// `path` is a prefix.
    pub fn prefix(mut self) -> Rule {
        self.prefix = true;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Rule {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Rule {
        self.body = body.into();
        self
    }

    /// A body of raw bytes (they need not be UTF-8).
    pub fn bytes(mut self, bytes: impl Into<Vec<u8>>) -> Rule {
        self.bytes = Some(bytes.into());
        self
    }

    /// A JSON body (with its content type).
    pub fn json(self, value: &serde_json::Value) -> Rule {
        self.header("Content-Type", "application/json")
            .body(value.to_string())
    }

    pub fn repeat(mut self, repeat: Repeat) -> Rule {
        self.repeat = Some(repeat);
        self
    }

    pub fn times(mut self, n: u64) -> Rule {
        self.times = Some(n);
        self
    }

    pub fn query_contains(mut self, q: &str) -> Rule {
        self.query_contains = Some(q.to_owned());
        self
    }

    /// Forward matching requests to the upstream (after `delay_ms`).
    pub fn forward(mut self) -> Rule {
        self.forward = true;
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Rule {
        self.delay_ms = ms;
        self
    }

    pub fn chunk_delay_ms(mut self, ms: u64) -> Rule {
        self.chunk_delay_ms = ms;
        self
    }

    pub fn abort_after(mut self, bytes: u64) -> Rule {
        self.abort_after = Some(bytes);
        self
    }

    fn matches(&self, method: &Method, path: &str, query: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && self.path.as_deref().is_none_or(|p| match self.prefix {
                true => path.starts_with(p),
                false => path == p,
            })
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}

/// A request the hostile server received.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// An `X-API-Key` header came with it.
    pub api_key: bool,
    /// An `Authorization` header came with it.
    pub authorization: bool,
    /// The index of the rule that answered (none: forwarded or 404).
    pub rule: Option<usize>,
}

impl Seen {
    /// Credentials of any kind came with the request.
    pub fn has_credentials(&self) -> bool {
        self.api_key || self.authorization
    }
}

struct ActiveRule {
    rule: Rule,
    matched: u64,
}

#[derive(Default)]
struct Script {
    rules: Vec<ActiveRule>,
    seen: Vec<Seen>,
}

struct Shared {
    base_url: String,
    upstream: Option<String>,
    script: Mutex<Script>,
    http: reqwest::Client,
}

impl Shared {
    fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running hostile server on a loopback port, with its own runtime so that
/// synchronous tests can drive it; stopped when dropped.
pub struct HostileServer {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HostileServer {
    /// Listen on a free loopback port; requests no rule matches go to
    /// `upstream` (a base URL such as `http://127.0.0.1:8080`) when given.
    pub fn start(upstream: Option<&str>) -> std::io::Result<HostileServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("hostile")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        ))))?;
        let base_url = format!("http://{}", listener.local_addr()?);
        // The forwarding client needs a TLS provider even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            base_url,
            upstream: upstream.map(|u| u.trim_end_matches('/').to_owned()),
            script: Mutex::default(),
            http,
        });
        let app = axum::Router::new()
            .route(
                "/_hostile/rules",
                axum::routing::put(put_rules).post(post_rule).get(get_rules),
            )
            .route(
                "/_hostile/requests",
                axum::routing::get(get_requests).delete(delete_requests),
            )
            .fallback(answer)
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        runtime.spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = server.await {
                tracing::warn!("hostile server stopped: {e}");
            }
        });
        Ok(HostileServer {
            shared,
            stop: Some(stop),
            runtime: Some(runtime),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// Append a rule (tried after those already there).
    pub fn add_rule(&self, rule: Rule) {
        self.shared
            .script()
            .rules
            .push(ActiveRule { rule, matched: 0 });
    }

    /// Replace every rule.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.script().rules = rules
            .into_iter()
            .map(|rule| ActiveRule { rule, matched: 0 })
            .collect();
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.script().seen.clone()
    }

    /// Requests received with this method whose path starts with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.shared
            .script()
            .seen
            .iter()
            .filter(|s| s.method.eq_ignore_ascii_case(method) && s.uri.starts_with(prefix))
            .count()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn put_rules(State(shared): State<Arc<Shared>>, Json(rules): Json<Vec<Rule>>) -> StatusCode {
    shared.script().rules = rules
        .into_iter()
        .map(|rule| ActiveRule { rule, matched: 0 })
        .collect();
    StatusCode::NO_CONTENT
}

async fn post_rule(State(shared): State<Arc<Shared>>, Json(rule): Json<Rule>) -> StatusCode {
    shared.script().rules.push(ActiveRule { rule, matched: 0 });
    StatusCode::CREATED
}

async fn get_rules(State(shared): State<Arc<Shared>>) -> Json<Vec<Rule>> {
    Json(
        shared
            .script()
            .rules
            .iter()
            .map(|r| r.rule.clone())
            .collect(),
    )
}

async fn get_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<Seen>> {
    Json(shared.script().seen.clone())
}

async fn delete_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.script().seen.clear();
    StatusCode::NO_CONTENT
}

/// Record the request, then answer with the first matching rule, the
/// upstream, or 404.
async fn answer(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let chosen = {
        let mut script = shared.script();
        let chosen = script.rules.iter_mut().enumerate().find_map(|(i, r)| {
            let live = r.rule.times.is_none_or(|t| r.matched < t);
            (live && r.rule.matches(&method, &path, &query)).then(|| {
                r.matched += 1;
                (i, r.rule.clone(), r.matched)
            })
        });
        let headers = req.headers();
        script.seen.push(Seen {
            method: method.to_string(),
            uri: req
                .uri()
                .path_and_query()
                .map_or(path.clone(), |p| p.to_string()),
            api_key: headers.contains_key("x-api-key"),
            authorization: headers.contains_key(header::AUTHORIZATION),
            rule: chosen.as_ref().filter(|c| !c.1.forward).map(|c| c.0),
        });
        chosen
    };
    match chosen {
        Some((_, rule, n)) => {
            tokio::time::sleep(Duration::from_millis(rule.delay_ms)).await;
            match rule.forward {
                true => forward(&shared, req).await,
                false => scripted(&shared, rule, n),
            }
        }
        None => forward(&shared, req).await,
    }
}

/// `{base}`, `{n}` and `{i}` filled in.
fn fill(template: &str, base: &str, n: u64, i: Option<u64>) -> String {
    let s = template
        .replace("{base}", base)
        .replace("{n}", &n.to_string());
    match i {
        Some(i) => s.replace("{i}", &i.to_string()),
        None => s,
    }
}

fn scripted(shared: &Shared, rule: Rule, n: u64) -> Response {
    let base = shared.base_url.as_str();
    let status = StatusCode::from_u16(if rule.status == 0 { 200 } else { rule.status })
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = Response::builder().status(status);
    for (name, value) in &rule.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(fill(value, base, n, None)),
        ) else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("hostile rule has a bad header {name:?}"),
            )
                .into_response();
        };
        builder = builder.header(name, value);
    }
    let first = match rule.bytes {
        Some(bytes) => Bytes::from(bytes),
        None => Bytes::from(fill(&rule.body, base, n, None)),
    };
    let simple = rule.repeat.is_none() && rule.chunk_delay_ms == 0 && rule.abort_after.is_none();
    let body = match simple {
        true => Body::from(first),
        false => Body::from_stream(body_stream(BodyState {
            first: Some(first),
            repeat: rule.repeat.unwrap_or_default(),
            base: shared.base_url.clone(),
            n,
            next_item: 0,
            suffix_sent: false,
            sent: 0,
            abort_after: rule.abort_after,
            chunk_delay: Duration::from_millis(rule.chunk_delay_ms),
        })),
    };
    builder
        .body(body)
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}

struct BodyState {
    first: Option<Bytes>,
    repeat: Repeat,
    base: String,
    n: u64,
    next_item: u64,
    suffix_sent: bool,
    sent: u64,
    abort_after: Option<u64>,
    chunk_delay: Duration,
}

/// Repeated items are sent in chunks of about this size (one item per
/// chunk with `chunk_delay_ms`).
const CHUNK: usize = 64 * 1024;

impl BodyState {
    /// The next piece of the body, or none at its end.
    fn next_chunk(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        let r = &self.repeat;
        if self.next_item < r.count {
            let mut chunk = String::new();
            while self.next_item < r.count && chunk.len() < CHUNK {
                let i = self.next_item;
                self.next_item += 1;
                if i > 0 {
                    chunk.push_str(&r.separator);
                }
                chunk.push_str(&fill(&r.item, &self.base, self.n, Some(i)));
                if !self.chunk_delay.is_zero() {
                    break;
                }
            }
            return Some(Bytes::from(chunk));
        }
        if !self.suffix_sent {
            self.suffix_sent = true;
            return Some(Bytes::from(fill(&r.suffix, &self.base, self.n, None)));
        }
        None
    }
}

fn body_stream(
    state: BodyState,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    stream::unfold(state, |mut state| async move {
        if !state.chunk_delay.is_zero() {
            tokio::time::sleep(state.chunk_delay).await;
        }
        let mut chunk = state.next_chunk()?;
        if let Some(limit) = state.abort_after {
            if state.sent >= limit {
                let cut = std::io::Error::other("hostile rule cut the body short");
                return Some((Err(cut), state));
            }
            let room = usize::try_from(limit - state.sent).unwrap_or(usize::MAX);
            chunk.truncate(room);
        }
        state.sent += chunk.len() as u64;
        Some((Ok(chunk), state))
    })
}

/// Send the request on to the upstream; JSON answers get the upstream's
/// base URL replaced by ours.
async fn forward(shared: &Shared, req: Request) -> Response {
    let Some(upstream) = &shared.upstream else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"message": "Not found"})),
        )
            .into_response();
    };
    let (parts, body) = req.into_parts();
    let url = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let Ok(body) = axum::body::to_bytes(body, MAX_FORWARDED_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
    };
    let mut out = shared.http.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST {
            out = out.header(name, value);
        }
    }
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let body = match json {
        true => Bytes::from(
            String::from_utf8_lossy(&body)
                .replace(upstream.as_str(), &shared.base_url)
                .into_bytes(),
        ),
        false => body,
    };
    let mut answer = Response::builder().status(status);
    for (name, value) in &headers {
        // The length may have changed with the rewrite; hyper sets it again.
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        // `Link` and `Location` lead back through the hostile server too.
        let rewritten = value
            .to_str()
            .ok()
            .filter(|v| v.contains(upstream.as_str()))
            .and_then(|v| {
                HeaderValue::try_from(v.replace(upstream.as_str(), &shared.base_url)).ok()
            });
        answer = answer.header(name, rewritten.unwrap_or_else(|| value.clone()));
    }
    answer
        .body(Body::from(body))
        .unwrap_or_else(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())
}
