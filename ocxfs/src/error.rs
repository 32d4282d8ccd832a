//! Typed errors and their one mapping to errno.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a FUSE request and One Codex.
///
/// Errors are `Clone` because one failure (a shared POST, a shared download)
/// is handed to every reader that waited on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("the API key was rejected (HTTP {status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("this account cannot download (HTTP 402): {0}")]
    PaymentRequired(String),
    #[error("access denied (HTTP 403): {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("rate limited (HTTP 429)")]
    RateLimited { retry_after: Option<Duration> },
    #[error("server error (HTTP {status}): {message}")]
    Server { status: u16, message: String },
    #[error("network error: {0}")]
    Network(String),
    /// No connection was made: the request was certainly not processed.
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server's certificate was refused; says for which host, why and
    /// what to do. Sending again cannot help.
    #[error("{0}")]
    Tls(String),
    /// The proxy in the way failed; says which, why and what to do.
    #[error("{0}")]
    Proxy(String),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("storage body ended early: got {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("the presigned URL has expired")]
    UrlExpired,
    #[error("the object changed on storage (ETag {expected} became {found})")]
    Changed { expected: String, found: String },
    #[error("the download was cancelled")]
    Cancelled,
    /// The kernel interrupted the request: its process got a signal.
    #[error("interrupted by a signal")]
    Interrupted,
    #[error("read-only file system")]
    ReadOnly,
    /// The document's terms forbid a download now: no POST was made.
    #[error("{object} cannot be downloaded: {reason}")]
    NotDownloadable { object: String, reason: String },
    /// `--max-posts` is used up: no POST was made.
    #[error(
        "the POST budget of {budget} is spent; files whose URL is cached stay readable. \
         Raise it with --max-posts (or -o max_posts=), or wait {wait_secs} s for the next period"
    )]
    PostBudgetSpent { budget: String, wait_secs: u64 },
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The errno a FUSE caller sees for this error. This is the only place
    /// where errors become errno values; the README documents the table.
    pub fn errno(&self) -> i32 {
        match self {
            // 401/403/402: retrying cannot help, the caller lacks a right.
            Error::Unauthorized { .. }
            | Error::PaymentRequired(_)
            | Error::Forbidden(_)
            | Error::NotDownloadable { .. } => libc::EACCES,
            // A quota the user set, not a fault: say so.
            Error::PostBudgetSpent { .. } => libc::EDQUOT,
            Error::NotFound(_) => libc::ENOENT,
            // The object changed under an open file: the page cache and our
            // blocks belong to the old version, so the handle is stale.
            Error::Changed { .. } => libc::ESTALE,
            Error::Timeout(_) => libc::ETIMEDOUT,
            Error::ReadOnly => libc::EROFS,
            Error::Cancelled | Error::Interrupted => libc::EINTR,
            Error::RateLimited { .. }
            | Error::Server { .. }
            | Error::Network(_)
            | Error::Connect(_)
            | Error::Tls(_)
            | Error::Proxy(_)
            | Error::InvalidResponse(_)
            | Error::Truncated { .. }
            | Error::UrlExpired
            | Error::Config(_) => libc::EIO,
        }
    }

    /// A failure that may go away if the same storage request is sent again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. }
                | Error::Server { .. }
                | Error::Network(_)
                | Error::Connect(_)
                | Error::Timeout(_)
                | Error::Truncated { .. }
        )
    }

    /// A short label used for counters and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unauthorized { .. } => "unauthorized",
            Error::PaymentRequired(_) => "payment_required",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::RateLimited { .. } => "rate_limited",
            Error::Server { .. } => "server",
            Error::Network(_) => "network",
            Error::Connect(_) => "connect",
            Error::Timeout(_) => "timeout",
            Error::Tls(_) => "tls",
            Error::Proxy(_) => "proxy",
            Error::InvalidResponse(_) => "invalid_response",
            Error::Truncated { .. } => "truncated",
            Error::UrlExpired => "url_expired",
            Error::Changed { .. } => "changed",
            Error::Cancelled => "cancelled",
            Error::Interrupted => "interrupted",
            Error::ReadOnly => "read_only",
            Error::NotDownloadable { .. } => "not_downloadable",
            Error::PostBudgetSpent { .. } => "post_budget_spent",
            Error::Config(_) => "config",
        }
    }

    /// Classify a reqwest failure without its URL: presigned URLs are
    /// secrets and reqwest's Display includes the URL.
    pub fn from_http(err: &reqwest::Error) -> Error {
        if let Some(named) = crate::connect_failure::explain(err) {
            return named;
        }
        let cause = std::error::Error::source(err)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        if err.is_connect() {
            return Error::Connect(format!("connection failed{cause}"));
        }
        let what = if err.is_body() || err.is_decode() {
            "connection failed while reading the body"
        } else if err.is_request() {
            "request failed"
        } else {
            "HTTP failure"
        };
        if err.is_timeout() {
            Error::Timeout(format!("{what}{cause}"))
        } else {
            Error::Network(format!("{what}{cause}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_the_documented_errnos() {
        let m = |e: Error| e.errno();
        assert_eq!(
            m(Error::Unauthorized {
                status: 401,
                message: String::new()
            }),
            libc::EACCES
        );
        assert_eq!(m(Error::PaymentRequired(String::new())), libc::EACCES);
        assert_eq!(m(Error::Forbidden(String::new())), libc::EACCES);
        assert_eq!(m(Error::NotFound(String::new())), libc::ENOENT);
        assert_eq!(
            m(Error::Server {
                status: 503,
                message: String::new()
            }),
            libc::EIO
        );
        assert_eq!(
            m(Error::Changed {
                expected: "a".into(),
                found: "b".into()
            }),
            libc::ESTALE
        );
        assert_eq!(m(Error::Timeout(String::new())), libc::ETIMEDOUT);
        assert_eq!(m(Error::ReadOnly), libc::EROFS);
        assert_eq!(
            m(Error::NotDownloadable {
                object: String::new(),
                reason: String::new()
            }),
            libc::EACCES
        );
        assert_eq!(
            m(Error::PostBudgetSpent {
                budget: "1/h".into(),
                wait_secs: 1
            }),
            libc::EDQUOT
        );
        assert_eq!(
            m(Error::Truncated {
                got: 1,
                expected: 2
            }),
            libc::EIO
        );
    }
}
