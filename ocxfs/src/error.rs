//! Typed errors, each mapped to its errno in one place.
//!
//! Design notes:
//!
//! - Every failure between a FUSE request and One Codex is an `Error`; the
//!   FUSE adapter turns it into an errno with `Error::errno` and nowhere
//!   else (the README's table documents the map).
//! - A failure caused by another error keeps it as its `source()`, not
//!   as words: a variant's own message says what ocxfs was doing, its
//!   causes say what failed underneath (down to the TLS or socket error).
//!   Log lines and messages print the whole chain through `Error::chain`.
//! - Errors are `Clone`, because one failure (a shared POST, a shared
//!   download) is handed to every reader that waited on it: causes are
//!   shared behind an `Arc` (`Cause`).
//! - An HTTP failure's cause is reqwest's error without its URL: presigned
//!   URLs are secrets.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a FUSE request and One Codex.
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
    #[error("network error")]
    Network(#[source] Cause),
    /// No connection was made: the request was certainly not processed.
    #[error("cannot connect")]
    Connect(#[source] Cause),
    #[error("timed out")]
    Timeout(#[source] Cause),
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
    /// A file handle the filesystem never gave out, or already released.
    #[error("unknown file handle {0}")]
    BadHandle(u64),
    #[error("no extended attribute {0}")]
    NoXattr(String),
    /// Only `user.` attributes exist here (Linux and FreeBSD name the
    /// namespace).
    #[error("extended attributes outside user. are not supported: {0}")]
    XattrNamespace(String),
    /// The caller's buffer cannot hold the attribute (or the list).
    #[error("an extended attribute of {0} bytes does not fit the buffer")]
    XattrTooLarge(usize),
    #[error("{0}")]
    Config(String),
}

/// The cause of an error, shared by every clone of it.
#[derive(Debug, Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Transparent: the cause's own causes follow it in the chain.
impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<reqwest::Error> for Cause {
    fn from(err: reqwest::Error) -> Cause {
        Cause(Arc::new(err.without_url()))
    }
}

/// A cause that ocxfs itself states (a timer that ran out, a test).
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl From<String> for Cause {
    fn from(message: String) -> Cause {
        Cause(Arc::new(Message(message)))
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Cause {
        message.to_owned().into()
    }
}

/// An error followed by its causes, `error: cause: cause…`.
pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            write!(f, ": {cause}")?;
            next = cause.source();
        }
        Ok(())
    }
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
            Error::BadHandle(_) => libc::EBADF,
            // ENODATA on Linux, ENOATTR on macOS and FreeBSD.
            Error::NoXattr(_) => crate::platform::NO_ATTRIBUTE,
            // ENOTSUP, not "no such attribute": `ls -l` then stops asking
            // about SELinux labels and ACLs for the whole mount, which would
            // otherwise cost two round trips per file.
            Error::XattrNamespace(_) => libc::ENOTSUP,
            Error::XattrTooLarge(_) => libc::ERANGE,
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
            Error::BadHandle(_) => "bad_handle",
            Error::NoXattr(_) => "no_xattr",
            Error::XattrNamespace(_) => "xattr_namespace",
            Error::XattrTooLarge(_) => "xattr_too_large",
            Error::Config(_) => "config",
        }
    }

    /// Classify a reqwest failure, keeping it (without its URL: presigned
    /// URLs are secrets) as the cause.
    pub fn from_http(err: reqwest::Error) -> Error {
        if let Some(named) = crate::connect_failure::explain(&err) {
            return named;
        }
        if err.is_connect() {
            Error::Connect(err.into())
        } else if err.is_timeout() {
            Error::Timeout(err.into())
        } else {
            Error::Network(err.into())
        }
    }

    /// This error with its whole chain of causes (`error: cause: cause…`),
    /// for log lines and messages.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_documented_errno() {
        let table = [
            (
                Error::Unauthorized {
                    status: 401,
                    message: String::new(),
                },
                libc::EACCES,
            ),
            (Error::PaymentRequired(String::new()), libc::EACCES),
            (Error::Forbidden(String::new()), libc::EACCES),
            (Error::NotFound(String::new()), libc::ENOENT),
            (Error::RateLimited { retry_after: None }, libc::EIO),
            (
                Error::Server {
                    status: 503,
                    message: String::new(),
                },
                libc::EIO,
            ),
            (Error::Network("reset".into()), libc::EIO),
            (Error::Connect("refused".into()), libc::EIO),
            (Error::Timeout("slow".into()), libc::ETIMEDOUT),
            (Error::Tls(String::new()), libc::EIO),
            (Error::Proxy(String::new()), libc::EIO),
            (Error::InvalidResponse(String::new()), libc::EIO),
            (
                Error::Truncated {
                    got: 1,
                    expected: 2,
                },
                libc::EIO,
            ),
            (Error::UrlExpired, libc::EIO),
            (
                Error::Changed {
                    expected: "a".into(),
                    found: "b".into(),
                },
                libc::ESTALE,
            ),
            (Error::Cancelled, libc::EINTR),
            (Error::Interrupted, libc::EINTR),
            (Error::ReadOnly, libc::EROFS),
            (
                Error::NotDownloadable {
                    object: String::new(),
                    reason: String::new(),
                },
                libc::EACCES,
            ),
            (
                Error::PostBudgetSpent {
                    budget: "1/h".into(),
                    wait_secs: 1,
                },
                libc::EDQUOT,
            ),
            (Error::BadHandle(7), libc::EBADF),
            (
                Error::NoXattr("user.x".into()),
                crate::platform::NO_ATTRIBUTE,
            ),
            (
                Error::XattrNamespace("security.selinux".into()),
                libc::ENOTSUP,
            ),
            (Error::XattrTooLarge(100), libc::ERANGE),
            (Error::Config(String::new()), libc::EIO),
        ];
        for (error, errno) in table {
            assert_eq!(error.errno(), errno, "{}", error.kind());
        }
    }

    #[test]
    fn the_chain_names_every_cause() {
        let error = Error::Timeout("no data from storage for 30s".into());
        assert_eq!(error.to_string(), "timed out");
        assert_eq!(
            error.chain().to_string(),
            "timed out: no data from storage for 30s"
        );
        // A leaf error is its own message.
        assert_eq!(Error::ReadOnly.chain().to_string(), "read-only file system");
    }

    /// A refused connection: the socket's own words reach the message, not
    /// only reqwest's "error sending request".
    #[tokio::test]
    async fn an_http_failure_keeps_its_root_cause_and_hides_the_url() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/secret-signature");
        let err = reqwest::Client::new().get(&url).send().await.unwrap_err();
        let error = Error::from_http(err);
        assert!(matches!(error, Error::Connect(_)), "{error:?}");
        let text = error.chain().to_string();
        assert!(text.starts_with("cannot connect: "), "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert!(!text.contains("secret-signature"), "{text}");
    }

    /// A server that does not speak TLS to an https:// request: the chain
    /// says what TLS found wrong, so it cannot be read as a plain refusal.
    #[tokio::test]
    async fn a_tls_failure_is_named_in_the_chain() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let (mut socket, _) = listener.accept().await.unwrap();
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        });
        let err = reqwest::Client::new()
            .get(format!("https://127.0.0.1:{port}/"))
            .send()
            .await
            .unwrap_err();
        server.abort();
        let text = Error::from_http(err).chain().to_string();
        assert!(text.contains("corrupt message"), "{text}");
    }
}
