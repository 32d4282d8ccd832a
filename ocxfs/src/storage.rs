//! Ranged GETs on presigned URLs, checked so that nothing but the exact
//! bytes asked for ever reaches a reader: the status, `Content-Range`,
//! `Content-Length`, `ETag` and the length of the body are all verified.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{StatusCode, Url, header};

use crate::api::read_capped;
use crate::error::{Error, Result};
use crate::http_client::HttpTrust;

/// The largest object size believed: what a file's size (`off_t`) can
/// hold. Storage or a listing claiming more is wrong.
pub const MAX_OBJECT_SIZE: u64 = i64::MAX as u64;

/// Storage error bodies are short XML documents.
const MAX_ERROR_BODY: usize = 16 * 1024;

pub struct StorageClient {
    http: reqwest::Client,
    /// Longest wait for the next piece of a body: a stalled connection is
    /// cut after this and the request retried.
    stall_timeout: Duration,
}

/// The answer to a ranged GET.
pub enum RangeAnswer {
    Body(RangeBody),
    /// The range starts at or past the end; `total` when storage said it.
    PastEnd {
        total: Option<u64>,
    },
}

pub struct RangeBody {
    /// Size of the whole object.
    pub total: u64,
    pub etag: Option<String>,
    /// Bytes this body must carry (the range clipped to the object).
    pub len: u64,
    received: u64,
    resp: reqwest::Response,
    stall_timeout: Duration,
}

impl RangeBody {
    /// The next piece of the body; `None` once exactly `len` bytes came.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        let next = tokio::time::timeout(self.stall_timeout, self.resp.chunk())
            .await
            .map_err(|_| {
                Error::Timeout(format!("no data from storage for {:?}", self.stall_timeout).into())
            })?
            .map_err(Error::from_http)?;
        match next {
            Some(chunk) => {
                self.received += chunk.len() as u64;
                if self.received > self.len {
                    return Err(Error::InvalidResponse(
                        "storage sent more bytes than the range".into(),
                    ));
                }
                Ok(Some(chunk))
            }
            None if self.received == self.len => Ok(None),
            None => Err(Error::Truncated {
                got: self.received,
                expected: self.len,
            }),
        }
    }
}

impl StorageClient {
    pub fn new(stall_timeout: Duration, trust: &HttpTrust) -> Result<StorageClient> {
        // No default headers: API credentials must never reach storage.
        let http = trust
            .builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(StorageClient {
            http,
            stall_timeout,
        })
    }

    /// GET bytes `[start, end)` (`end` may lie past the object's end).
    /// With `if_match`, an object whose ETag changed fails with `Changed`.
    pub async fn get_range(
        &self,
        url: &Url,
        start: u64,
        end: u64,
        if_match: Option<&str>,
    ) -> Result<RangeAnswer> {
        debug_assert!(end > start);
        let mut req = self
            .http
            .get(url.clone())
            .header(header::RANGE, format!("bytes={}-{}", start, end - 1));
        if let Some(etag) = if_match {
            req = req.header(header::IF_MATCH, etag);
        }
        let send = req.send();
        let resp = tokio::time::timeout(self.stall_timeout, send)
            .await
            .map_err(|_| {
                Error::Timeout(
                    format!("storage did not answer within {:?}", self.stall_timeout).into(),
                )
            })?
            .map_err(Error::from_http)?;
        let status = resp.status();
        let headers = resp.headers();
        let etag = headers
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let (Some(want), Some(got)) = (if_match, etag.as_deref()) {
            if status.is_success() && want != got {
                return Err(Error::Changed {
                    expected: want.into(),
                    found: got.into(),
                });
            }
        }
        let content_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let cr = headers
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range)
                    .ok_or_else(|| {
                        Error::InvalidResponse("206 without a valid Content-Range".into())
                    })?;
                let (first, last, total) = match cr {
                    ContentRange::Bytes {
                        first,
                        last,
                        total: Some(total),
                    } => (first, last, total),
                    _ => return Err(Error::InvalidResponse("206 without the object size".into())),
                };
                let want_last = end.min(total) - 1;
                if first != start || last != want_last || last >= total {
                    return Err(Error::InvalidResponse(format!(
                        "asked for bytes {start}-{want_last}, storage sent {first}-{last}/{total}"
                    )));
                }
                let len = last - first + 1;
                if content_length.is_some_and(|cl| cl != len) {
                    return Err(Error::InvalidResponse(
                        "Content-Length does not match Content-Range".into(),
                    ));
                }
                Ok(RangeAnswer::Body(self.body(resp, total, etag, len)))
            }
            // Storage ignored the Range: usable only from the first byte.
            StatusCode::OK if start == 0 => {
                let total = content_length
                    .filter(|t| *t <= MAX_OBJECT_SIZE)
                    .ok_or_else(|| {
                        Error::InvalidResponse("200 without a valid Content-Length".into())
                    })?;
                if total == 0 {
                    return Ok(RangeAnswer::PastEnd { total: Some(0) });
                }
                let len = end.min(total);
                Ok(RangeAnswer::Body(self.body(resp, total, etag, len)))
            }
            StatusCode::OK => Err(Error::InvalidResponse(
                "storage ignored the Range header".into(),
            )),
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let total = headers
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_content_range)
                    .and_then(|cr| match cr {
                        ContentRange::Unsatisfied { total } => Some(total),
                        ContentRange::Bytes { .. } => None,
                    });
                Ok(RangeAnswer::PastEnd { total })
            }
            _ => Err(status_error(resp, if_match).await),
        }
    }

    fn body(
        &self,
        resp: reqwest::Response,
        total: u64,
        etag: Option<String>,
        len: u64,
    ) -> RangeBody {
        RangeBody {
            total,
            etag,
            len,
            received: 0,
            resp,
            stall_timeout: self.stall_timeout,
        }
    }
}

async fn status_error(resp: reqwest::Response, if_match: Option<&str>) -> Error {
    let status = resp.status();
    let retry_after = crate::api::retry_after(resp.headers());
    let body = read_capped(resp, MAX_ERROR_BODY).await;
    let (code, message) = s3_error(&String::from_utf8_lossy(&body));
    let detail = format!("{code}: {message}");
    match status {
        StatusCode::FORBIDDEN if message.to_ascii_lowercase().contains("expired") => {
            Error::UrlExpired
        }
        StatusCode::FORBIDDEN => Error::Forbidden(detail),
        StatusCode::NOT_FOUND => Error::NotFound(detail),
        StatusCode::PRECONDITION_FAILED => Error::Changed {
            expected: if_match.unwrap_or("?").into(),
            found: "a different object".into(),
        },
        StatusCode::TOO_MANY_REQUESTS => Error::RateLimited { retry_after },
        s if s == StatusCode::SERVICE_UNAVAILABLE && code == "SlowDown" => {
            Error::RateLimited { retry_after }
        }
        s => Error::Server {
            status: s.as_u16(),
            message: detail,
        },
    }
}

/// `<Error><Code>…</Code><Message>…</Message>…</Error>` -> (code, message).
fn s3_error(xml: &str) -> (String, String) {
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let start = xml.find(&open)? + open.len();
        let len = xml[start..].find(&format!("</{tag}>"))?;
        Some(xml[start..start + len].trim().to_owned())
    };
    (
        field("Code").unwrap_or_else(|| "-".into()),
        field("Message").unwrap_or_else(|| "-".into()),
    )
}

#[derive(Debug, PartialEq, Eq)]
enum ContentRange {
    Bytes {
        first: u64,
        last: u64,
        total: Option<u64>,
    },
    Unsatisfied {
        total: u64,
    },
}

/// `bytes 0-99/1000`, `bytes 0-99/*`, `bytes */1000`.
fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok().filter(|t| *t <= MAX_OBJECT_SIZE)?),
    };
    if range.trim() == "*" {
        return Some(ContentRange::Unsatisfied { total: total? });
    }
    let (first, last) = range.split_once('-')?;
    let (first, last): (u64, u64) = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    (first <= last).then_some(ContentRange::Bytes { first, last, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            parse_content_range("bytes 0-99/1000"),
            Some(ContentRange::Bytes {
                first: 0,
                last: 99,
                total: Some(1000)
            })
        );
        assert_eq!(
            parse_content_range("bytes 5-5/*"),
            Some(ContentRange::Bytes {
                first: 5,
                last: 5,
                total: None
            })
        );
        assert_eq!(
            parse_content_range("bytes */42"),
            Some(ContentRange::Unsatisfied { total: 42 })
        );
        assert_eq!(parse_content_range("bytes 9-3/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_content_range("bytes x-1/2"), None);
        assert_eq!(
            parse_content_range("bytes 0-1/9223372036854775808"),
            None,
            "2^63: no file can be that large"
        );
    }

    proptest::proptest! {
        #[test]
        fn header_parsers_never_panic(v in ".*", xml in ".*") {
            let _ = parse_content_range(&v);
            let _ = s3_error(&xml);
        }

        #[test]
        fn totals_no_file_can_have_are_refused(total in MAX_OBJECT_SIZE + 1..=u64::MAX) {
            proptest::prop_assert_eq!(parse_content_range(&format!("bytes 0-0/{total}")), None);
            proptest::prop_assert_eq!(parse_content_range(&format!("bytes */{total}")), None);
        }

        #[test]
        fn content_range_round_trips(first in 0u64..1 << 50, len in 1u64..1 << 30, extra in 0u64..1 << 30) {
            let last = first + len - 1;
            let total = last + 1 + extra;
            proptest::prop_assert_eq!(
                parse_content_range(&format!("bytes {first}-{last}/{total}")),
                Some(ContentRange::Bytes { first, last, total: Some(total) })
            );
        }
    }

    #[test]
    fn s3_error_bodies() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message><Expires>2026</Expires></Error>"#;
        assert_eq!(
            s3_error(xml),
            ("AccessDenied".into(), "Request has expired".into())
        );
        assert_eq!(s3_error("junk"), ("-".into(), "-".into()));
    }
}
