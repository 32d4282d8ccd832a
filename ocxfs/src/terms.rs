//! A document's download terms (`downloads_remaining`, `valid_until`) as the
//! listing gives them, and the refusal they mean before any POST.

use chrono::{DateTime, FixedOffset, Utc};

use crate::api::model::Document;
use crate::error::Error;

/// What the API says limits a document's downloads. Samples have none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Terms {
    /// `None`: no limit.
    pub downloads_remaining: Option<u64>,
    pub valid_until: Option<DateTime<FixedOffset>>,
}

impl Terms {
    /// From a listed document. A `valid_until` that is not RFC 3339 is no
    /// limit ocxfs can check: the API still decides (and refuses) then.
    pub fn of(d: &Document) -> Terms {
        let valid_until = d.valid_until.as_deref().and_then(|t| {
            let parsed = DateTime::parse_from_rfc3339(t).ok();
            if parsed.is_none() {
                tracing::debug!(
                    id = d.id(),
                    "valid_until is not an RFC 3339 time; not checked"
                );
            }
            parsed
        });
        Terms {
            downloads_remaining: d.downloads_remaining,
            valid_until,
        }
    }

    /// Why a POST for the document would be refused at `now`, if it would.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(t) = self.valid_until.filter(|t| *t <= now) {
            return Some(format!("its valid_until ({}) has passed", t.to_rfc3339()));
        }
        (self.downloads_remaining == Some(0)).then(|| "downloads_remaining is 0".to_owned())
    }

    /// The error an open gets instead of a POST, if the terms forbid one.
    pub fn check(&self, object: &str, now: DateTime<Utc>) -> Result<(), Error> {
        match self.refusal(now) {
            None => Ok(()),
            Some(reason) => Err(Error::NotDownloadable {
                object: object.to_owned(),
                reason,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: serde_json::Value) -> Document {
        let mut base = serde_json::json!({
            "$uri": "/api/v1/documents/0123456789abcdef",
            "created_at": "2019-02-08T13:54:36.768056-08:00",
        });
        base.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn no_limits_means_no_refusal() {
        let t = Terms::of(&doc(
            serde_json::json!({"downloads_remaining": null, "valid_until": null}),
        ));
        assert_eq!(t, Terms::default());
        assert_eq!(t.refusal(Utc::now()), None);
        let t = Terms::of(&doc(serde_json::json!({})));
        assert_eq!(t.refusal(Utc::now()), None);
    }

    #[test]
    fn zero_downloads_or_a_past_date_refuse() {
        let t = Terms::of(&doc(serde_json::json!({"downloads_remaining": 0})));
        assert_eq!(
            t.refusal(Utc::now()).as_deref(),
            Some("downloads_remaining is 0")
        );
        let err = t
            .check("documents/0123456789abcdef", Utc::now())
            .unwrap_err();
        assert_eq!(err.errno(), libc::EACCES);
        let t = Terms::of(&doc(serde_json::json!({
            "downloads_remaining": 3,
            "valid_until": "2020-01-01T00:00:00+00:00",
        })));
        assert!(t.refusal(Utc::now()).unwrap().contains("2020-01-01"));
        let before = DateTime::parse_from_rfc3339("2019-06-01T00:00:00Z").unwrap();
        assert_eq!(t.refusal(before.with_timezone(&Utc)), None);
    }

    #[test]
    fn an_unreadable_date_is_left_to_the_api() {
        let t = Terms::of(&doc(serde_json::json!({"valid_until": "next tuesday"})));
        assert_eq!(t.valid_until, None);
        assert_eq!(t.refusal(Utc::now()), None);
    }
}
