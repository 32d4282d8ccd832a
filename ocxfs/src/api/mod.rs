//! The One Codex API client: the account check, listings, the charging
//! `download_uri` POST.

pub mod credentials;
mod listing;
pub mod model;
mod pagination;

pub use listing::Progress;
pub use pagination::retry_after;

use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::http_client::HttpTrust;
use credentials::Credentials;
use listing::{Fetched, Paging};
use model::{Account, ApiErrorBody, Document, DownloadUri, Project, Sample, Tag};

pub const DEFAULT_API_BASE: &str = "https://app.onecodex.com";
/// Error bodies are read for their message only; cap what we buffer.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The account and the POST answer a few hundred bytes.
const MAX_ANSWER_BODY: u64 = 1 << 20;

/// The whole account as the tree shows it.
#[derive(Debug, Default)]
pub struct Listing {
    pub documents: Vec<Document>,
    pub samples: Vec<Sample>,
    pub projects: Vec<Project>,
    pub tags: Vec<Tag>,
    /// Entries left out because they were malformed.
    pub malformed: u64,
}

/// A listing the account may not be allowed to see (403/404) is empty.
fn optional<T>(result: Result<Fetched<T>>, what: &str) -> Result<Fetched<T>> {
    match result {
        Err(Error::Forbidden(_) | Error::NotFound(_)) => {
            tracing::warn!("cannot list {what} with this key; showing none");
            Ok(Fetched {
                items: Vec::new(),
                malformed: 0,
            })
        }
        other => other,
    }
}

/// Which collection an object belongs to; both download the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Document,
    Sample,
}

impl ObjectKind {
    fn collection(self) -> &'static str {
        match self {
            ObjectKind::Document => "documents",
            ObjectKind::Sample => "samples",
        }
    }
}

/// A downloadable object: its kind and One Codex id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub kind: ObjectKind,
    pub id: String,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.collection(), self.id)
    }
}

impl ObjectId {
    /// The `documents/<id>` form back into an id.
    pub fn parse(s: &str) -> Option<ObjectId> {
        let (collection, id) = s.split_once('/')?;
        let kind = match collection {
            "documents" => ObjectKind::Document,
            "samples" => ObjectKind::Sample,
            _ => return None,
        };
        is_valid_id(id).then(|| ObjectId {
            kind,
            id: id.to_owned(),
        })
    }
}

/// Ids go into URL paths: accept only what One Codex issues (alphanumerics).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub struct ApiClient {
    /// Reads: follows redirects within the API's origin only.
    http: reqwest::Client,
    /// The charged POST: follows no redirect at all.
    post_http: reqwest::Client,
    base: Url,
    credentials: Credentials,
    progress: Progress,
}

/// Redirects of reads are followed only within the API's origin (scheme,
/// host and port): credentials go nowhere else. A redirect elsewhere is
/// not followed and its answer becomes an error in `send`.
fn same_origin_redirects(base: &Url) -> reqwest::redirect::Policy {
    const MAX_REDIRECTS: usize = 5;
    let origin = base.origin();
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.url().origin() != origin {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

impl ApiClient {
    pub fn new(base: &str, credentials: Credentials, trust: &HttpTrust) -> Result<ApiClient> {
        let base = Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| Error::Config(format!("invalid API base URL {base:?}")))?;
        let client = |redirects| {
            trust
                .builder()
                .timeout(Duration::from_secs(120))
                .redirect(redirects)
                .build()
                .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))
        };
        Ok(ApiClient {
            http: client(same_origin_redirects(&base))?,
            post_http: client(reqwest::redirect::Policy::none())?,
            base,
            credentials,
            progress: Progress::default(),
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let http = match method {
            Method::GET => &self.http,
            _ => &self.post_http,
        };
        let req = http
            .request(method, url)
            .header(header::ACCEPT, "application/json");
        match &self.credentials {
            Credentials::ApiKey(k) => req.header("X-API-Key", k.expose()),
            Credentials::Bearer(t) => req.bearer_auth(t.expose()),
        }
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        url
    }

    /// Send and turn non-2xx answers into typed errors. A redirect that
    /// reaches here was not followed (another origin, or the POST): an
    /// error, never retried.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(Error::from_http)?;
        let status = resp.status();
        if status.is_success() {
            Ok(resp)
        } else if status.is_redirection() {
            Err(Error::InvalidResponse(format!(
                "the API answered a redirect (HTTP {}) to {}; not followed: credentials stay with {}",
                status.as_u16(),
                redirect_target(&resp),
                self.base.origin().ascii_serialization(),
            )))
        } else {
            Err(status_error(resp).await)
        }
    }

    /// A small JSON answer (the account, the POST's).
    async fn json<T: DeserializeOwned>(resp: reqwest::Response, what: &str) -> Result<T> {
        parse_json(&read_bounded(resp, MAX_ANSWER_BODY, what).await?, what)
    }

    /// Entries received by the listing in progress, for a progress line.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// `GET /api/v1/account`: the explicit key check (anonymous listings
    /// succeed with public data, so a listing proves nothing).
    pub async fn account(&self) -> Result<Account> {
        let resp = self
            .send(self.request(Method::GET, self.url("/api/v1/account")))
            .await?;
        Self::json(resp, "account").await
    }

    /// Everything the tree shows, fetched concurrently. An account that
    /// may not list samples, projects or tags (403/404) shows none.
    pub async fn listing(&self) -> Result<Listing> {
        self.progress.reset();
        let (documents, samples, projects, tags) = tokio::join!(
            self.list_all("/api/v1/documents", Paging::Pages),
            self.list_all("/api/v1/samples", Paging::Cursor),
            self.list_all("/api/v1/projects", Paging::Pages),
            self.list_all("/api/v1/tags", Paging::Pages),
        );
        let (documents, samples) = (documents?, optional(samples, "samples")?);
        let (projects, tags) = (optional(projects, "projects")?, optional(tags, "tags")?);
        Ok(Listing {
            malformed: documents.malformed
                + samples.malformed
                + projects.malformed
                + tags.malformed,
            documents: documents.items,
            samples: samples.items,
            projects: projects.items,
            tags: tags.items,
        })
    }

    /// `POST …/{id}/download_uri`. May incur retrieval charges: sent again
    /// only when it certainly was not processed (see `post_retry_delay`);
    /// the presign cache decides when to call it at all.
    pub async fn download_uri(&self, object: &ObjectId) -> Result<DownloadUri> {
        let path = format!(
            "/api/v1/{}/{}/download_uri",
            object.kind.collection(),
            object.id
        );
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            match self.send(self.request(Method::POST, self.url(&path))).await {
                Ok(resp) => break resp,
                Err(e) => match post_retry_delay(&e, attempt) {
                    Some(delay) => {
                        tracing::warn!(%object, error = %e.chain(), ?delay, "download_uri POST was not processed; trying again");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
            }
        };
        let uri: DownloadUri = Self::json(resp, "download_uri").await?;
        match Url::parse(&uri.download_uri) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(uri),
            _ => Err(Error::InvalidResponse(
                "download_uri is not an http(s) URL".into(),
            )),
        }
    }
}

/// The POST may cost money, so it is sent again only when it certainly was
/// not processed: the connection was never made, or the API said 429 and
/// how long to wait. At most three tries, and never a long wait.
fn post_retry_delay(e: &Error, attempt: u32) -> Option<Duration> {
    const MAX_ATTEMPTS: u32 = 3;
    const MAX_WAIT: Duration = Duration::from_secs(30);
    if attempt >= MAX_ATTEMPTS {
        return None;
    }
    match e {
        Error::Connect(_) => Some(Duration::from_millis(500) * attempt),
        Error::RateLimited {
            retry_after: Some(wait),
        } if *wait <= MAX_WAIT => Some(*wait),
        _ => None,
    }
}

/// Where a redirect points, as an origin only (a full URL may carry secrets).
fn redirect_target(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| resp.url().join(v).ok())
        .map_or_else(
            || "nowhere valid".to_owned(),
            |u| u.origin().ascii_serialization(),
        )
}

/// Map an API error answer to a typed error with the server's message.
async fn status_error(resp: reqwest::Response) -> Error {
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let body = read_capped(resp, MAX_ERROR_BODY).await;
    let message = serde_json::from_slice::<ApiErrorBody>(&body)
        .ok()
        .and_then(|b| b.message)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthorized {
            status: 401,
            message,
        },
        StatusCode::PAYMENT_REQUIRED => Error::PaymentRequired(message),
        StatusCode::FORBIDDEN => Error::Forbidden(message),
        StatusCode::NOT_FOUND => Error::NotFound(message),
        StatusCode::TOO_MANY_REQUESTS => Error::RateLimited { retry_after },
        s => Error::Server {
            status: s.as_u16(),
            message,
        },
    }
}

/// The whole body, or an error when it is larger than `cap` (announced
/// or not): a server cannot make us buffer without end.
async fn read_bounded(mut resp: reqwest::Response, cap: u64, what: &str) -> Result<Vec<u8>> {
    let too_large =
        || Error::InvalidResponse(format!("{what}: the answer is larger than {cap} bytes"));
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Error::from_http)? {
        if (out.len() + chunk.len()) as u64 > cap {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Parse a JSON answer. Bytes that are not UTF-8 (in a name, say) become
/// U+FFFD rather than failing everything the answer holds.
fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    let text = String::from_utf8_lossy(body);
    if let std::borrow::Cow::Owned(_) = text {
        tracing::warn!(
            answer = what,
            "the API sent bytes that are not UTF-8; replacing them"
        );
    }
    serde_json::from_str(&text).map_err(|e| Error::InvalidResponse(format!("{what}: {e}")))
}

/// Read at most `cap` bytes of a body (error bodies, XML errors).
pub(crate) async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_post_is_retried_only_when_certainly_not_processed() {
        let refused = Error::Connect("refused".into());
        assert!(post_retry_delay(&refused, 1).is_some());
        assert!(post_retry_delay(&refused, 3).is_none(), "bounded");
        let told = Error::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(post_retry_delay(&told, 1), Some(Duration::from_secs(2)));
        assert!(post_retry_delay(&Error::RateLimited { retry_after: None }, 1).is_none());
        let too_long = Error::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert!(post_retry_delay(&too_long, 1).is_none());
        for processed_maybe in [
            Error::Server {
                status: 500,
                message: String::new(),
            },
            Error::Server {
                status: 503,
                message: String::new(),
            },
            Error::Network("reset".into()),
            Error::Timeout("slow".into()),
            Error::PaymentRequired(String::new()),
        ] {
            assert!(
                post_retry_delay(&processed_maybe, 1).is_none(),
                "{processed_maybe}"
            );
        }
    }
}
