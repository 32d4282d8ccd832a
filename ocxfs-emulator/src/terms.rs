//! Each document's download terms: the `downloads_remaining` and
//! `valid_until` its `download_uri` POST enforces, plus a test-only delay.
//!
//! The API reference documents both fields but not the refusals; the
//! emulator answers as the nearest documented statuses do: a document past
//! its `valid_until` is 403 (not authorised any more), one with no downloads
//! left is 402 (downloads need more than the account has). Every successful
//! POST uses one download when `downloads_remaining` is a number.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

/// What the document listing shows and the POST enforces.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Snapshot {
    pub downloads_remaining: Option<u64>,
    /// RFC 3339, as the API sends it.
    pub valid_until: Option<String>,
    /// How long every `download_uri` POST for the document waits before it
    /// answers (a slow API, so that tests can kill a client mid-POST).
    pub post_delay_ms: u64,
}

/// Why a POST is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// HTTP 403.
    Expired,
    /// HTTP 402.
    NoDownloadsLeft,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Expired => StatusCode::FORBIDDEN,
            Refusal::NoDownloadsLeft => StatusCode::PAYMENT_REQUIRED,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Expired => "This document is no longer available for download",
            Refusal::NoDownloadsLeft => "No downloads remain for this document",
        }
    }
}

#[derive(Default)]
struct State {
    downloads_remaining: Option<u64>,
    valid_until: Option<DateTime<FixedOffset>>,
    post_delay: Duration,
}

/// One document's terms (no limits unless set).
#[derive(Default)]
pub(crate) struct Terms {
    state: Mutex<State>,
}

fn parse_time(s: &str) -> Result<DateTime<FixedOffset>, String> {
    DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("valid_until {s:?} is not an RFC 3339 time: {e}"))
}

impl Terms {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        Snapshot {
            downloads_remaining: s.downloads_remaining,
            valid_until: s.valid_until.map(|t| t.to_rfc3339()),
            post_delay_ms: s.post_delay.as_millis() as u64,
        }
    }

    pub fn post_delay(&self) -> Duration {
        self.lock().post_delay
    }

    /// Sets the manifest's values (`valid_until` as RFC 3339).
    pub fn set(
        &self,
        downloads_remaining: Option<u64>,
        valid_until: Option<&str>,
    ) -> Result<(), String> {
        let valid_until = valid_until.map(parse_time).transpose()?;
        let mut s = self.lock();
        s.downloads_remaining = downloads_remaining;
        s.valid_until = valid_until;
        Ok(())
    }

    /// Applies a control request's JSON object: each key present is set
    /// (`null` lifts a limit); unknown keys are an error and change nothing.
    pub fn update(&self, body: &serde_json::Value) -> Result<Snapshot, String> {
        let obj = body.as_object().ok_or("the terms are a JSON object")?;
        let mut next = {
            let s = self.lock();
            State {
                downloads_remaining: s.downloads_remaining,
                valid_until: s.valid_until,
                post_delay: s.post_delay,
            }
        };
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("downloads_remaining", serde_json::Value::Null) => next.downloads_remaining = None,
                ("downloads_remaining", v) => {
                    next.downloads_remaining = Some(v.as_u64().ok_or_else(|| {
                        format!("downloads_remaining: {v} is not a non-negative integer")
                    })?);
                }
                ("valid_until", serde_json::Value::Null) => next.valid_until = None,
                ("valid_until", serde_json::Value::String(s)) => {
                    next.valid_until = Some(parse_time(s)?)
                }
                ("post_delay_ms", v) => {
                    let ms = v
                        .as_u64()
                        .filter(|ms| *ms <= 600_000)
                        .ok_or_else(|| format!("post_delay_ms: {v} is not within 0..600000"))?;
                    next.post_delay = Duration::from_millis(ms);
                }
                (k, v) => return Err(format!("unexpected {k:?}: {v}")),
            }
        }
        *self.lock() = next;
        Ok(self.snapshot())
    }

    /// Admits one download at `now`, using one of the remaining ones.
    pub fn admit(&self, now: DateTime<Utc>) -> Result<(), Refusal> {
        let mut s = self.lock();
        if s.valid_until.is_some_and(|t| t <= now) {
            return Err(Refusal::Expired);
        }
        match &mut s.downloads_remaining {
            Some(0) => Err(Refusal::NoDownloadsLeft),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_run_out_after_the_remaining_count() {
        let t = Terms::default();
        t.set(Some(2), None).unwrap();
        let now = Utc::now();
        assert_eq!(t.admit(now), Ok(()));
        assert_eq!(t.snapshot().downloads_remaining, Some(1));
        assert_eq!(t.admit(now), Ok(()));
        assert_eq!(t.admit(now), Err(Refusal::NoDownloadsLeft));
        assert_eq!(t.snapshot().downloads_remaining, Some(0));
        assert_eq!(Refusal::NoDownloadsLeft.status().as_u16(), 402);
    }

    #[test]
    fn past_valid_until_refuses_without_using_a_download() {
        let t = Terms::default();
        t.set(Some(5), Some("2020-01-01T00:00:00+00:00")).unwrap();
        assert_eq!(t.admit(Utc::now()), Err(Refusal::Expired));
        assert_eq!(t.snapshot().downloads_remaining, Some(5));
        assert_eq!(Refusal::Expired.status().as_u16(), 403);
        let later = DateTime::parse_from_rfc3339("2019-12-31T23:59:59+00:00").unwrap();
        assert_eq!(t.admit(later.with_timezone(&Utc)), Ok(()));
    }

    #[test]
    fn updates_set_and_lift_limits_or_change_nothing() {
        let t = Terms::default();
        let s = t
            .update(&serde_json::json!({"downloads_remaining": 3, "valid_until": "2030-01-01T00:00:00Z", "post_delay_ms": 250}))
            .unwrap();
        assert_eq!(s.downloads_remaining, Some(3));
        assert_eq!(s.valid_until.as_deref(), Some("2030-01-01T00:00:00+00:00"));
        assert_eq!(t.post_delay(), Duration::from_millis(250));
        for bad in [
            serde_json::json!({"downloads_remaining": -1}),
            serde_json::json!({"valid_until": "tomorrow"}),
            serde_json::json!({"post_delay_ms": 1_000_000}),
            serde_json::json!({"colour": "red"}),
            serde_json::json!([1]),
        ] {
            assert!(t.update(&bad).is_err(), "{bad}");
        }
        assert_eq!(t.snapshot(), s);
        let s = t
            .update(&serde_json::json!({"downloads_remaining": null, "valid_until": null}))
            .unwrap();
        assert_eq!((s.downloads_remaining, s.valid_until), (None, None));
        assert_eq!(s.post_delay_ms, 250);
    }
}
