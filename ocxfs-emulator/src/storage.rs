//! The S3-like storage behind presigned URLs: signing, validation, S3 XML
//! errors, conditional and ranged GETs, and the streamed (throttled,
//! fault-injected) body.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream;
use tokio::task::JoinHandle;

use super::Shared;
use super::faults::StorageAction;
use super::net::{ConnCtx, ConnInfo};
use super::range;
use super::store::{Document, Reader};

/// Body chunk size: large enough for well over 1 GB/s, small enough to stream.
const CHUNK: usize = 1024 * 1024;

pub(crate) fn routes() -> axum::Router<Arc<Shared>> {
    // An explicit HEAD route: S3 refuses HEAD on a URL presigned for GET.
    axum::Router::new().route("/storage/{id}/{*name}", get(get_object).head(head_object))
}

/// Signs and checks presigned URLs with a per-process random key.
pub(crate) struct Signer {
    keys: [RandomState; 2],
    next_serial: AtomicU64,
    /// URLs with a serial below this were invalidated by `/_emulator/expire`.
    expired_before: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Signer {
    pub fn new() -> Signer {
        // RandomState is SipHash with random keys: a keyed hash, 2 x 64 bits.
        Signer {
            keys: [RandomState::new(), RandomState::new()],
            next_serial: AtomicU64::new(1),
            expired_before: AtomicU64::new(0),
        }
    }

    fn sign(&self, id: &str, expires: u64, serial: u64) -> String {
        let mut sig = String::with_capacity(32);
        for k in &self.keys {
            let mut h = k.build_hasher();
            h.write(id.as_bytes());
            h.write_u64(expires);
            h.write_u64(serial);
            sig.push_str(&format!("{:016x}", h.finish()));
        }
        sig
    }

    /// `{origin}/storage/{id}/{name}?X-Amz-...`, or with a storage base and
    /// an object under `--docs`, `{base}/{relative path}?X-Amz-...`.
    pub fn presign(
        &self,
        origin: &str,
        storage_base: Option<&str>,
        doc: &Document,
        ttl: u64,
    ) -> String {
        let serial = self.next_serial.fetch_add(1, Ordering::SeqCst);
        let expires = unix_now().saturating_add(ttl);
        let location = match (storage_base, &doc.storage_key) {
            (Some(base), Some(key)) => format!("{base}/{key}"),
            _ => format!(
                "{origin}/storage/{}/{}",
                doc.id,
                percent_encode(&doc.filename)
            ),
        };
        format!(
            "{location}?X-Amz-Expires={expires}&X-Amz-Serial={serial}&X-Amz-Signature={}",
            self.sign(&doc.id, expires, serial)
        )
    }

    pub fn expire_all(&self) {
        self.expired_before
            .store(self.next_serial.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn request_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

fn s3_time(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An S3 XML error document.
fn s3_error(status: StatusCode, code: &str, message: &str, extra: &[(&str, String)]) -> Response {
    let rid = request_id();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{}</Message>",
        xml_escape(message)
    );
    for (k, v) in extra {
        xml.push_str(&format!("<{k}>{}</{k}>", xml_escape(v)));
    }
    xml.push_str(&format!("<RequestId>{rid}</RequestId></Error>"));
    let mut resp = (status, xml).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(&rid) {
        h.insert("x-amz-request-id", v);
    }
    resp
}

fn expired(shared: &Shared, expires: SystemTime) -> Response {
    shared.stats.expired();
    let now = SystemTime::now();
    s3_error(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "Request has expired",
        &[("Expires", s3_time(expires)), ("ServerTime", s3_time(now))],
    )
}

/// The signed parameters of a storage URL's query.
struct Signed<'a> {
    expires: u64,
    serial: u64,
    signature: &'a str,
}

fn parse_query(q: &str) -> Option<Signed<'_>> {
    let (mut expires, mut serial, mut signature) = (None, None, None);
    for pair in q.split('&') {
        match pair.split_once('=') {
            Some(("X-Amz-Expires", v)) => expires = v.parse().ok(),
            Some(("X-Amz-Serial", v)) => serial = v.parse().ok(),
            Some(("X-Amz-Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    Some(Signed {
        expires: expires?,
        serial: serial?,
        signature: signature?,
    })
}

/// The document id of a `/storage/{id}/{name}` path.
fn path_id(uri: &Uri) -> &str {
    let rest = uri.path().strip_prefix("/storage/").unwrap_or("");
    rest.split('/').next().unwrap_or("")
}

/// Strong comparison of `If-Match` against the current ETag (quotes optional).
fn if_match_ok(value: &str, etag: &str) -> bool {
    let bare = etag.trim_matches('"');
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || v.trim_matches('"') == bare && !v.starts_with("W/"))
}

fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key("x-api-key") || headers.contains_key(header::AUTHORIZATION)
}

async fn head_object(State(shared): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    if has_credentials(&headers) {
        shared.stats.storage_credentials();
    }
    tokio::time::sleep(shared.latency).await;
    // HEAD answers carry no body: only the status matters.
    match shared.store.get(path_id(&uri)) {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(_) => StatusCode::FORBIDDEN.into_response(),
    }
}

async fn get_object(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let range = headers.get(header::RANGE).map(|v| v.to_str().unwrap_or(""));
    shared.stats.storage_get(range.is_some());
    if has_credentials(&headers) {
        shared.stats.storage_credentials();
    }
    let resp = respond(&shared, conn.0, &uri, &headers, range).await;
    tracing::debug!(
        path = uri.path(),
        status = resp.status().as_u16(),
        "storage GET"
    );
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    resp
}

async fn respond(
    shared: &Arc<Shared>,
    conn: Arc<ConnCtx>,
    uri: &Uri,
    headers: &HeaderMap,
    range: Option<&str>,
) -> Response {
    let id = path_id(uri);
    let Some(doc) = shared.store.get(id) else {
        let key = uri.path().trim_start_matches('/').to_owned();
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
            &[("Key", key)],
        );
    };
    let Some(signed) = parse_query(uri.query().unwrap_or("")) else {
        return s3_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the X-Amz-Signature, X-Amz-Expires and X-Amz-Serial parameters",
            &[],
        );
    };
    if shared.signer.sign(id, signed.expires, signed.serial) != signed.signature {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            &[],
        );
    }
    // Forced expiries (expire-all, the fault) report an Expires just past.
    let forced = || SystemTime::now() - Duration::from_secs(1);
    if unix_now() > signed.expires {
        // In the past, so representable (a far future `expires` is not).
        return expired(
            shared,
            SystemTime::UNIX_EPOCH + Duration::from_secs(signed.expires),
        );
    }
    if signed.serial < shared.signer.expired_before.load(Ordering::SeqCst) {
        return expired(shared, forced());
    }

    let (changes, action) = shared.faults.storage(id, &shared.stats);
    for _ in 0..changes {
        doc.change();
    }
    let mut ending = Ending::Complete;
    let mut stall = None;
    match action {
        Some(StorageAction::Status {
            status,
            retry_after,
        }) => {
            let (code, msg) = match status {
                500 => (
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                ),
                429 => ("TooManyRequests", "Please reduce your request rate."),
                _ => ("SlowDown", "Please reduce your request rate."),
            };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut resp = s3_error(status, code, msg, &[]);
            if let Some(secs) = retry_after {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
        Some(StorageAction::Expire) => return expired(shared, forced()),
        Some(StorageAction::Reset) => ending = Ending::Reset,
        Some(StorageAction::ShortBody) => ending = Ending::Short,
        Some(StorageAction::Stall(d)) => stall = Some(d),
        None => {}
    }

    // One version for the whole response: a concurrent change never mixes bytes.
    let version = doc.version();
    if let Some(v) = headers.get(header::IF_MATCH) {
        if !if_match_ok(v.to_str().unwrap_or(""), &version.etag) {
            return s3_error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                &[("Condition", "If-Match".to_owned())],
            );
        }
    }
    let size = doc.size;
    let span = match range.map(|r| (r, range::parse(r))) {
        Some((raw, Some(spec))) => match spec.resolve(size) {
            Some(span) => Some(span),
            None => {
                let mut resp = s3_error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                    &[
                        ("RangeRequested", raw.to_owned()),
                        ("ActualObjectSize", size.to_string()),
                    ],
                );
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return resp;
            }
        },
        // No Range, or one we ignore (invalid, multiple ranges): the whole object.
        _ => None,
    };

    let reader = {
        let doc = doc.clone();
        match tokio::task::spawn_blocking(move || doc.open()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::warn!(id, "cannot open document content: {e}");
                return s3_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    &[],
                );
            }
            Err(e) => {
                tracing::warn!(id, "open task failed: {e}");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        }
    };
    let (start, end) = span.map_or((0, size), |(a, b)| (a, b + 1));
    let len = end - start;
    let cut = match ending {
        Ending::Complete => end,
        Ending::Reset | Ending::Short => start + len / 2,
    };
    let chunk = shared.bandwidth.map_or(CHUNK, |rate| {
        usize::try_from(rate / 20).unwrap_or(CHUNK).clamp(1, CHUNK)
    });
    let body = BodyStream {
        reader,
        pos: start,
        cut,
        ending,
        xor: version.xor_key(),
        chunk,
        pending: None,
        stall,
        conn,
        bandwidth: shared.bandwidth,
        shared: shared.clone(),
    };

    let mut resp = Response::new(Body::from_stream(stream::unfold(body, BodyStream::next)));
    *resp.status_mut() = if span.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = resp.headers_mut();
    let last_modified = DateTime::<Utc>::from(version.last_modified)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let mut put = |name, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put(header::CONTENT_LENGTH, len.to_string());
    put(header::ETAG, version.etag);
    put(header::LAST_MODIFIED, last_modified);
    put(header::ACCEPT_RANGES, "bytes".to_owned());
    put(header::CONTENT_TYPE, "application/octet-stream".to_owned());
    put(
        header::HeaderName::from_static("x-amz-request-id"),
        request_id(),
    );
    if span.is_some() {
        put(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", end - 1),
        );
    }
    resp
}

/// How a body ends once `cut` is reached.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ending {
    /// All bytes sent.
    Complete,
    /// `short_body`: stop early; the connection closes with bytes missing.
    Short,
    /// `reset`: error the body and close the connection with a TCP RST.
    Reset,
}

struct BodyStream {
    reader: Reader,
    pos: u64,
    /// Where sending stops (the range end unless a fault cuts it short).
    cut: u64,
    ending: Ending,
    xor: u8,
    chunk: usize,
    /// The next chunk, read ahead while the previous one is being sent.
    pending: Option<JoinHandle<io::Result<Bytes>>>,
    stall: Option<Duration>,
    conn: Arc<ConnCtx>,
    bandwidth: Option<u64>,
    shared: Arc<Shared>,
}

impl BodyStream {
    fn spawn_read(&self, pos: u64) -> Option<JoinHandle<io::Result<Bytes>>> {
        if pos >= self.cut {
            return None;
        }
        let len = (self.cut - pos).min(self.chunk as u64) as usize;
        let (reader, xor) = (self.reader.clone(), self.xor);
        Some(tokio::task::spawn_blocking(move || {
            reader.read_at(pos, len, xor)
        }))
    }

    async fn next(mut self) -> Option<(io::Result<Bytes>, BodyStream)> {
        if let Some(d) = self.stall.take() {
            // Headers are already flushed while the body is pending.
            tokio::time::sleep(d).await;
        }
        if self.pos >= self.cut {
            return match self.ending {
                Ending::Reset => {
                    self.conn.reset_on_close();
                    self.ending = Ending::Short;
                    Some((Err(io::Error::other("injected connection reset")), self))
                }
                Ending::Complete | Ending::Short => None,
            };
        }
        let pending = match self.pending.take() {
            Some(p) => p,
            None => self.spawn_read(self.pos)?,
        };
        let data = match pending.await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::warn!("storage read failed at {}: {e}", self.pos);
                self.cut = self.pos;
                self.ending = Ending::Short;
                return Some((Err(e), self));
            }
            Err(e) => {
                self.cut = self.pos;
                self.ending = Ending::Short;
                return Some((Err(io::Error::other(e)), self));
            }
        };
        let n = data.len();
        self.pending = self.spawn_read(self.pos + n as u64);
        if let Some(rate) = self.bandwidth {
            tokio::time::sleep_until(self.conn.reserve(n, rate)).await;
        }
        // Counted when handed to the connection, so an aborted download is
        // charged only for what was (about to be) sent.
        self.shared.stats.storage_bytes(n as u64);
        self.pos += n as u64;
        Some((Ok(data), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_all_fields() {
        let s = Signer::new();
        let sig = s.sign("abc", 10, 1);
        assert_eq!(sig.len(), 32);
        assert_eq!(sig, s.sign("abc", 10, 1));
        assert_ne!(sig, s.sign("abd", 10, 1));
        assert_ne!(sig, s.sign("abc", 11, 1));
        assert_ne!(sig, s.sign("abc", 10, 2));
        assert_ne!(sig, Signer::new().sign("abc", 10, 1));
    }

    #[test]
    fn if_match_forms() {
        let etag = "\"0011\"";
        assert!(if_match_ok("\"0011\"", etag));
        assert!(if_match_ok("0011", etag));
        assert!(if_match_ok("\"x\", \"0011\"", etag));
        assert!(if_match_ok("*", etag));
        assert!(!if_match_ok("\"0012\"", etag));
        assert!(!if_match_ok("W/\"0011\"", etag));
        assert!(!if_match_ok("", etag));
    }

    #[test]
    fn query_and_path_parsing() {
        let q = parse_query("X-Amz-Expires=5&X-Amz-Serial=2&X-Amz-Signature=ab").unwrap();
        assert_eq!((q.expires, q.serial, q.signature), (5, 2, "ab"));
        assert!(parse_query("X-Amz-Expires=5&X-Amz-Signature=ab").is_none());
        assert!(parse_query("").is_none());
        let uri: Uri = "/storage/0123/R%C3%B6%C3%B6%27s%20a%2Fb?x=1"
            .parse()
            .unwrap();
        assert_eq!(path_id(&uri), "0123");
        assert_eq!(
            percent_encode("Röö's a/b.txt"),
            "R%C3%B6%C3%B6%27s%20a%2Fb.txt"
        );
    }
}
