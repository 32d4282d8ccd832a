//! Listing headers: `X-Total-Count`, GitHub-style `Link`, `Retry-After`.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderMap;

use crate::error::{Error, Result};

pub fn total_count(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-total-count")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `rel="next"` target of a `Link` header, resolved against the URL of
/// the page that carried it.
pub fn next_link(headers: &HeaderMap, current: &Url) -> Result<Option<Url>> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        if let Some(target) = parse_next(value) {
            return current
                .join(target)
                .map(Some)
                .map_err(|_| Error::InvalidResponse(format!("bad Link target {target:?}")));
        }
    }
    Ok(None)
}

/// `<url>; rel="next", <url>; rel="last"` -> the next URL.
fn parse_next(value: &str) -> Option<&str> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .any(|(k, v)| {
                k.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_whitespace()
                        .any(|r| r == "next")
            })
            .then_some(target)
    })
}

/// A `Link` must not lead the API key to another host.
pub fn check_same_origin(base: &Url, next: &Url) -> Result<()> {
    if base.origin() == next.origin() {
        Ok(())
    } else {
        Err(Error::InvalidResponse(
            "listing Link points to another host".into(),
        ))
    }
}

/// `url` with query parameter `key` set to `value` (replacing it).
pub fn with_param(url: &Url, key: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != key)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut next = url.clone();
    next.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(key, value);
    next
}

/// The cursor of the next page, when the API paginates by cursor.
pub fn next_cursor(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("x-next-cursor")?.to_str().ok()?.trim();
    (!v.is_empty() && v != "null").then(|| v.to_owned())
}

/// The longest `Retry-After` believed; a longer one is clamped to it.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`] (the HTTP-date
/// form and anything that is not a number of seconds are treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::strategy::Strategy as _;

    /// `X-Total-Count` and `Retry-After` as the API may send them: any text.
    fn header_text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::num::u64::ANY.prop_map(|n| n.to_string()),
            "[0-9]{1,60}",
            "-[0-9]{1,20}",
            "[ -~]{0,40}",
        ]
    }

    #[test]
    fn finds_next_among_several_links() {
        let v = r#"<https://x/api/v1/documents?page=3&per_page=2>; rel="last", <https://x/api/v1/documents?page=2&per_page=2>; rel="next""#;
        assert_eq!(
            parse_next(v),
            Some("https://x/api/v1/documents?page=2&per_page=2")
        );
        assert_eq!(parse_next(r#"</a?page=1>; rel="prev""#), None);
        assert_eq!(parse_next("garbage"), None);
        assert_eq!(parse_next("<x>; rel=next"), Some("x"));
    }

    #[test]
    fn resolves_relative_links_and_checks_origin() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            r#"</api/v1/documents?page=2>; rel="next""#.parse().unwrap(),
        );
        let cur = Url::parse("http://127.0.0.1:9/api/v1/documents?page=1").unwrap();
        let next = next_link(&h, &cur).unwrap().unwrap();
        assert_eq!(next.as_str(), "http://127.0.0.1:9/api/v1/documents?page=2");
        assert!(check_same_origin(&cur, &next).is_ok());
        let evil = Url::parse("http://evil.example/api").unwrap();
        assert!(check_same_origin(&cur, &evil).is_err());
    }

    proptest::proptest! {
        #[test]
        fn link_parsing_never_panics(v in ".*") {
            let _ = parse_next(&v);
            let mut h = HeaderMap::new();
            if let Ok(value) = v.parse() {
                h.insert("link", value);
                let _ = next_link(&h, &Url::parse("http://h/x").unwrap());
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn numbers_in_headers_never_panic_and_stay_in_range(v in header_text()) {
            let mut h = HeaderMap::new();
            if let Ok(value) = v.parse::<reqwest::header::HeaderValue>() {
                h.insert("x-total-count", value.clone());
                h.insert(reqwest::header::RETRY_AFTER, value);
            }
            let _ = total_count(&h);
            if let Some(wait) = retry_after(&h) {
                proptest::prop_assert!(wait <= MAX_RETRY_AFTER);
            }
        }
    }

    #[test]
    fn replaces_the_page_number() {
        let u = Url::parse("http://h/p?per_page=1000&page=1").unwrap();
        assert_eq!(
            with_param(&u, "page", "7").as_str(),
            "http://h/p?per_page=1000&page=7"
        );
        let c = with_param(&u, "cursor", "a b&c");
        assert_eq!(
            c.query_pairs().find(|(k, _)| k == "cursor").unwrap().1,
            "a b&c"
        );
        let mut h = HeaderMap::new();
        assert_eq!(next_cursor(&h), None);
        h.insert("x-next-cursor", "abc123".parse().unwrap());
        assert_eq!(next_cursor(&h).as_deref(), Some("abc123"));
        h.insert("x-next-cursor", "".parse().unwrap());
        assert_eq!(next_cursor(&h), None);
    }
}
