//! The One Codex API client: credentials, listings with pagination, and the
//! charging `download_uri` POST.

pub mod credentials;
pub mod model;
mod pagination;

pub use pagination::retry_after;

use std::time::Duration;

use reqwest::{Method, StatusCode, Url, header};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::http_client::HttpTrust;
use credentials::Credentials;
use model::{Account, ApiErrorBody, Document, DownloadUri, Project, Sample, Tag};

pub const DEFAULT_API_BASE: &str = "https://app.onecodex.com";
/// The schema's maximum page size: fewer round trips for large accounts.
const PAGE_SIZE: u32 = 1000;
/// A listing with more pages than this is treated as a server loop.
const MAX_PAGES: u32 = 100_000;
/// Error bodies are read for their message only; cap what we buffer.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paging {
    /// `page=` numbers (and `Link` headers).
    Pages,
    /// `X-Pagination-Style: cursor`, `cursor=`, `X-Next-Cursor`.
    Cursor,
}

/// The whole account as the tree shows it.
#[derive(Debug, Default)]
pub struct Listing {
    pub documents: Vec<Document>,
    pub samples: Vec<Sample>,
    pub projects: Vec<Project>,
    pub tags: Vec<Tag>,
}

/// A listing the account may not be allowed to see (403/404) is empty.
fn optional<T>(result: Result<Vec<T>>, what: &str) -> Result<Vec<T>> {
    match result {
        Err(Error::Forbidden(_) | Error::NotFound(_)) => {
            tracing::warn!("cannot list {what} with this key; showing none");
            Ok(Vec::new())
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
    http: reqwest::Client,
    base: Url,
    credentials: Credentials,
}

impl ApiClient {
    pub fn new(base: &str, credentials: Credentials, trust: &HttpTrust) -> Result<ApiClient> {
        let base = Url::parse(base)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| Error::Config(format!("invalid API base URL {base:?}")))?;
        let http = trust
            .builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(ApiClient {
            http,
            base,
            credentials,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self
            .http
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

    /// Send and turn non-2xx answers into typed errors.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| Error::from_http(&e))?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(status_error(resp).await)
        }
    }

    async fn json<T: DeserializeOwned>(resp: reqwest::Response, what: &str) -> Result<T> {
        let body = resp.bytes().await.map_err(|e| Error::from_http(&e))?;
        serde_json::from_slice(&body).map_err(|e| Error::InvalidResponse(format!("{what}: {e}")))
    }

    /// `GET /api/v1/account`: the explicit key check (anonymous listings
    /// succeed with public data, so a listing proves nothing).
    pub async fn account(&self) -> Result<Account> {
        let resp = self
            .send(self.request(Method::GET, self.url("/api/v1/account")))
            .await?;
        Self::json(resp, "account").await
    }

    pub async fn list_documents(&self) -> Result<Vec<Document>> {
        self.list_all("/api/v1/documents", Paging::Pages).await
    }

    /// Everything the tree shows, fetched concurrently. An account that
    /// may not list samples, projects or tags (403/404) shows none.
    pub async fn listing(&self) -> Result<Listing> {
        let (documents, samples, projects, tags) = tokio::join!(
            self.list_documents(),
            self.list_all("/api/v1/samples", Paging::Cursor),
            self.list_all("/api/v1/projects", Paging::Pages),
            self.list_all("/api/v1/tags", Paging::Pages),
        );
        Ok(Listing {
            documents: documents?,
            samples: optional(samples, "samples")?,
            projects: optional(projects, "projects")?,
            tags: optional(tags, "tags")?,
        })
    }

    /// Fetch every page of a listing: with `Paging::Cursor`, ask for cursor
    /// pagination and follow `X-Next-Cursor`; otherwise (or when the API
    /// does not offer cursors) follow `Link: rel="next"`, stopping at
    /// `X-Total-Count` or on an empty page.
    async fn list_all<T: DeserializeOwned>(&self, path: &str, paging: Paging) -> Result<Vec<T>> {
        let mut url = self.url(path);
        url.query_pairs_mut()
            .append_pair("per_page", &PAGE_SIZE.to_string());
        if paging == Paging::Pages {
            url.query_pairs_mut().append_pair("page", "1");
        }
        let mut items: Vec<T> = Vec::new();
        // Entries received, parsed or not, compared with X-Total-Count.
        let mut seen = 0u64;
        let mut page = 1u32;
        loop {
            let mut req = self.request(Method::GET, url.clone());
            if paging == Paging::Cursor {
                req = req.header("X-Pagination-Style", "cursor");
            }
            let resp = self.send(req).await?;
            let total = pagination::total_count(resp.headers());
            let cursor = pagination::next_cursor(resp.headers());
            let next = pagination::next_link(resp.headers(), &url)?;
            let batch: Vec<Box<RawValue>> = Self::json(resp, path).await?;
            let empty = batch.is_empty();
            seen += batch.len() as u64;
            // One malformed entry must not hide the rest of the account.
            for raw in batch {
                match serde_json::from_str::<T>(raw.get()) {
                    Ok(item) => items.push(item),
                    Err(e) => {
                        tracing::warn!(listing = path, error = %e, "skipping an entry the API sent malformed")
                    }
                }
            }
            let done = empty || total.is_some_and(|t| seen >= t);
            match (cursor, next) {
                _ if done => break,
                (Some(cursor), _) => url = pagination::with_param(&url, "cursor", &cursor),
                (None, Some(next)) => {
                    pagination::check_same_origin(&self.base, &next)?;
                    url = next;
                }
                // No Link but the total says more: ask for the next page number.
                (None, None) if total.is_some() && paging == Paging::Pages => {
                    url = pagination::with_param(&url, "page", &(page + 1).to_string());
                }
                (None, None) => break,
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(Error::InvalidResponse(format!(
                    "{path}: listing never ends"
                )));
            }
        }
        Ok(items)
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
                        tracing::warn!(%object, error = %e, ?delay, "download_uri POST was not processed; trying again");
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
