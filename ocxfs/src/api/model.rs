//! One Codex API response shapes. Unknown fields are ignored; fields the
//! API documents as nullable are `Option`.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A reference to another resource: `{"$ref": "/api/v1/users/…"}`, or the
/// resource expanded inline with its `$uri` (when `expand=all` is sent).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Reference {
    Ref {
        #[serde(rename = "$ref")]
        uri: String,
    },
    Expanded {
        #[serde(rename = "$uri")]
        uri: String,
    },
}

impl Reference {
    pub fn uri(&self) -> &str {
        match self {
            Reference::Ref { uri } | Reference::Expanded { uri } => uri,
        }
    }
}

/// `GET /api/v1/documents` items.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    #[serde(rename = "$uri")]
    pub uri: String,
    pub created_at: DateTime<FixedOffset>,
    #[serde(default, deserialize_with = "lossy_string")]
    pub filename: Option<String>,
    #[serde(default, deserialize_with = "lenient_size")]
    pub size: Option<u64>,
    #[serde(default)]
    pub uploader: Option<Reference>,
    #[serde(default)]
    pub description: Option<String>,
    /// Downloads left, when the document has a limit (`None`: no limit).
    #[serde(default, deserialize_with = "lenient_size")]
    pub downloads_remaining: Option<u64>,
    /// The time after which it cannot be downloaded (RFC 3339), if any.
    #[serde(default, deserialize_with = "lossy_string")]
    pub valid_until: Option<String>,
}

impl Document {
    /// The id is the last path segment of `$uri`.
    pub fn id(&self) -> &str {
        last_segment(&self.uri)
    }
}

/// `GET /api/v1/samples` items. Only `available` samples can be downloaded.
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    #[serde(rename = "$uri")]
    pub uri: String,
    pub created_at: DateTime<FixedOffset>,
    #[serde(default, deserialize_with = "lossy_string")]
    pub filename: Option<String>,
    #[serde(default, deserialize_with = "lenient_size")]
    pub size: Option<u64>,
    #[serde(default)]
    pub owner: Option<Reference>,
    #[serde(default)]
    pub project: Option<Reference>,
    #[serde(default)]
    pub tags: Vec<Reference>,
    #[serde(default, deserialize_with = "lossy_string")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lossy_string")]
    pub visibility: Option<String>,
}

impl Sample {
    pub fn id(&self) -> &str {
        last_segment(&self.uri)
    }

    pub fn is_available(&self) -> bool {
        self.status.as_deref() == Some("available")
    }
}

/// `GET /api/v1/projects` items.
#[derive(Debug, Clone, Deserialize)]
pub struct Project {
    #[serde(rename = "$uri")]
    pub uri: String,
    #[serde(default, deserialize_with = "lossy_string")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lossy_string")]
    pub project_name: Option<String>,
}

/// `GET /api/v1/tags` items.
#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    #[serde(rename = "$uri")]
    pub uri: String,
    #[serde(default, deserialize_with = "lossy_string")]
    pub name: Option<String>,
}

/// `GET /api/v1/account`.
#[derive(Debug, Clone, Deserialize)]
pub struct Account {
    #[serde(rename = "$uri")]
    pub uri: String,
    #[serde(default)]
    pub email: Option<String>,
}

/// `POST /api/v1/{documents,samples}/{id}/download_uri`.
#[derive(Clone, Deserialize)]
pub struct DownloadUri {
    pub download_uri: String,
    pub expires_in_hours: u64,
}

impl std::fmt::Debug for DownloadUri {
    // The URL carries a signature: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadUri")
            .field("download_uri", &"<redacted>")
            .field("expires_in_hours", &self.expires_in_hours)
            .finish()
    }
}

/// Error bodies: `{"message": "…", "status": N}`, some with `msg`.
#[derive(Debug, Default, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default, alias = "msg")]
    pub message: Option<String>,
}

/// A string field decoded leniently: a lone UTF-16 surrogate escape (which
/// strict JSON parsers reject, failing the whole listing) becomes U+FFFD.
fn lossy_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    match raw.as_deref().map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => decode_json_string(text)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected a string")),
    }
}

/// The largest size a file can show (`st_size` is signed).
pub const MAX_SIZE: u64 = i64::MAX as u64;

/// A size that is not a non-negative integer (a float, a string, a value
/// beyond u64) or that no file can have (2^63 or more) is treated as
/// unknown: the size is then learned from storage.
fn lenient_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    // Raw, so that a number no float can hold (1e400) is not an error.
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    let text = raw.as_deref().map_or("null", RawValue::get);
    let size = text.parse::<u64>().ok().filter(|s| *s <= MAX_SIZE);
    if size.is_none() && text != "null" {
        let shown: String = text.chars().take(40).collect();
        tracing::warn!(
            size = shown,
            "the listing gives an impossible size; asking storage instead"
        );
    }
    Ok(size)
}

/// Decode a JSON string literal (with its quotes), replacing invalid
/// escapes of surrogates by U+FFFD.
pub fn decode_json_string(text: &str) -> Option<String> {
    let inner = text.trim().strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    let hex4 = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Option<u32> {
        let s: String = (0..4).filter_map(|_| chars.next()).collect();
        if s.len() == 4 {
            u32::from_str_radix(&s, 16).ok()
        } else {
            None
        }
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let unit = hex4(&mut chars)?;
                let decoded = match unit {
                    0xD800..=0xDBFF => {
                        let mut lookahead = chars.clone();
                        let low = (lookahead.next() == Some('\\') && lookahead.next() == Some('u'))
                            .then(|| hex4(&mut lookahead))
                            .flatten()
                            .filter(|l| (0xDC00..=0xDFFF).contains(l));
                        match low {
                            Some(low) => {
                                chars = lookahead;
                                char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                            }
                            None => None,
                        }
                    }
                    _ => char::from_u32(unit),
                };
                out.push(decoded.unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            _ => return None,
        }
    }
    Some(out)
}

pub fn last_segment(uri: &str) -> &str {
    uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::strategy::Strategy as _;

    use ocxfs_emulator::fixtures::read as fixture;

    #[test]
    fn parses_the_real_documents_listing() {
        let docs: Vec<Document> = serde_json::from_str(&fixture("documents.json")).unwrap();
        assert_eq!(docs.len(), 17);
        let first = &docs[0];
        assert_eq!(first.id(), "a375a9e4c1484df1");
        assert_eq!(first.filename.as_deref(), Some("foobar_report.pdf"));
        assert_eq!(first.size, Some(442139));
        assert_eq!(
            first.uploader.as_ref().unwrap().uri(),
            "/api/v1/users/4ada56103d9a48b8"
        );
        assert_eq!(
            first.created_at.to_rfc3339(),
            "2019-02-08T13:54:36.768056-08:00"
        );
        assert!(
            docs.iter()
                .any(|d| d.filename.as_deref() == Some("Röö's report.pdf"))
        );
        assert!(docs.iter().all(|d| d.id().len() == 16));
    }

    #[test]
    fn parses_the_real_samples_tags_and_projects() {
        let samples: Vec<Sample> = serde_json::from_str(&fixture("samples.json")).unwrap();
        assert!(samples.len() > 10);
        let s = samples
            .iter()
            .find(|s| s.id() == "7428cca4a3a04a8e")
            .unwrap();
        assert_eq!(s.filename.as_deref(), Some("SRR2352185.fastq.gz"));
        assert_eq!(s.size, Some(181687821));
        assert!(s.is_available());
        assert_eq!(s.visibility.as_deref(), Some("private"));
        assert_eq!(s.tags.len(), 3);
        assert_eq!(s.tags[0].uri(), "/api/v1/tags/42997b7a62634985");
        assert!(s.project.is_none());
        let tags: Vec<Tag> = serde_json::from_str(&fixture("tags.json")).unwrap();
        assert!(
            tags.iter()
                .any(|t| t.name.as_deref() == Some("environmental"))
        );
        let projects: Vec<Project> = serde_json::from_str(&fixture("projects.json")).unwrap();
        assert!(projects.is_empty());
        let p: Project = serde_json::from_str(
            r#"{"$uri": "/api/v1/projects/aa", "name": null, "project_name": "gut_2024", "public": false}"#,
        )
        .unwrap();
        assert_eq!(
            (p.name, p.project_name.as_deref()),
            (None, Some("gut_2024"))
        );
    }

    #[test]
    fn parses_expanded_references_and_null_sizes() {
        let json = r#"[{"$uri": "/api/v1/documents/0123456789abcdef",
            "created_at": "2020-01-01T00:00:00+00:00", "filename": "x", "size": null,
            "uploader": {"$uri": "/api/v1/users/aa", "email": "a@b"}, "new_field": 1}]"#;
        let docs: Vec<Document> = serde_json::from_str(json).unwrap();
        assert_eq!(docs[0].size, None);
        assert_eq!(docs[0].uploader.as_ref().unwrap().uri(), "/api/v1/users/aa");
    }

    #[test]
    fn parses_users_as_accounts_and_error_bodies() {
        let users: Vec<Account> = serde_json::from_str(&fixture("users.json")).unwrap();
        assert_eq!(users[0].email.as_deref(), Some("asmngs@onecodex.com"));
        let e: ApiErrorBody = serde_json::from_str(r#"{"msg": "nope", "status": 402}"#).unwrap();
        assert_eq!(e.message.as_deref(), Some("nope"));
    }

    #[test]
    fn bad_names_and_sizes_do_not_fail_the_listing() {
        let json = r#"{"$uri": "/api/v1/documents/ab", "created_at": "2020-01-01T00:00:00Z",
            "filename": "a\ud800b\ud83d\ude00\n\"q\"\u00e9", "size": 1e300}"#;
        let d: Document = serde_json::from_str(json).unwrap();
        assert_eq!(d.filename.as_deref(), Some("a\u{fffd}b😀\n\"q\"é"));
        assert_eq!(d.size, None);
        let d: Document = serde_json::from_str(r#"{"$uri": "/x/ab", "created_at": "2020-01-01T00:00:00Z", "size": -3, "filename": null}"#).unwrap();
        assert_eq!((d.filename, d.size), (None, None));
        for (size, parsed) in [
            ("9223372036854775807", Some(MAX_SIZE)),
            ("9223372036854775808", None),
            ("18446744073709551615", None),
            ("18446744073709551616", None),
            ("1e300", None),
            ("1e400", None),
            ("5.0", None),
            ("\"5\"", None),
            ("{\"a\": [1]}", None),
        ] {
            let json = format!(
                r#"{{"$uri": "/x/ab", "created_at": "2020-01-01T00:00:00Z", "size": {size}}}"#
            );
            let d: Document = serde_json::from_str(&json).unwrap();
            assert_eq!(d.size, parsed, "{size}");
        }
        assert!(
            serde_json::from_str::<Document>(
                r#"{"$uri": "/x/ab", "created_at": "2020-01-01T00:00:00Z", "filename": 7}"#
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn decoding_matches_serde_on_valid_strings(s in "\\PC*") {
            let text = serde_json::to_string(&s).unwrap();
            proptest::prop_assert_eq!(decode_json_string(&text), Some(s));
        }

        #[test]
        fn any_listed_size_is_a_size_a_file_can_have(
            n in proptest::prop_oneof![
                proptest::num::u64::ANY.prop_map(|n| n.to_string()),
                proptest::num::i64::ANY.prop_map(|n| n.to_string()),
                proptest::num::f64::ANY.prop_map(|n| serde_json::json!(n).to_string()),
                "[1-9][0-9]{0,400}",
                "-?[1-9][0-9]{0,30}(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,4})?",
            ]
        ) {
            let json = format!(r#"{{"$uri": "/x/ab", "created_at": "2020-01-01T00:00:00Z", "size": {n}}}"#);
            let d = serde_json::from_str::<Document>(&json).unwrap();
            proptest::prop_assert!(d.size.is_none_or(|s| s <= MAX_SIZE), "{n} became {:?}", d.size);
        }

        #[test]
        fn decoding_never_panics(s in ".*") {
            let _ = decode_json_string(&s);
            let _ = serde_json::from_str::<Document>(&s);
        }
    }

    #[test]
    fn download_uri_debug_hides_the_url() {
        let d: DownloadUri = serde_json::from_str(
            r#"{"download_uri": "https://s3/x?X-Amz-Signature=secret", "expires_in_hours": 1}"#,
        )
        .unwrap();
        assert!(!format!("{d:?}").contains("secret"));
    }
}
