//! Fetching a whole paginated listing within fixed bounds.
//!
//! A server can send a `Link: next` that loops, pages without end, or one
//! endless page. Every listing therefore stops with an error, in bounded
//! memory, when it passes any of these bounds: a page URL (or cursor) seen
//! before, [`MAX_PAGES`] pages, [`MAX_ENTRIES`] entries, [`MAX_PAGE_BYTES`]
//! in one page or [`MAX_LISTING_BYTES`] in all, or an `X-Total-Count` above
//! [`MAX_ENTRIES`]. Entries received so far are counted in [`Progress`], so
//! that a slow listing can say how far it is.

use std::collections::HashSet;
use std::hash::{Hash as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{ApiClient, pagination};
use crate::error::{Error, Result};

/// The schema's maximum page size: fewer round trips for large accounts.
const PAGE_SIZE: u32 = 1000;
/// More pages than this in one listing is a server loop.
pub const MAX_PAGES: u64 = 20_000;
/// The most entries one listing (documents, samples, …) may have: about
/// 300 MB of memory in the worst case, far beyond real accounts.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// The largest page (1000 entries are a few MB).
pub const MAX_PAGE_BYTES: u64 = 64 << 20;
/// The most bytes all pages of one listing may add up to (what is kept of
/// them in memory is less).
pub const MAX_LISTING_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Paging {
    /// `page=` numbers (and `Link` headers).
    Pages,
    /// `X-Pagination-Style: cursor`, `cursor=`, `X-Next-Cursor`.
    Cursor,
}

/// Entries received by the listings in progress (all collections), parsed
/// or not; reset when a full listing starts.
#[derive(Debug, Default)]
pub struct Progress {
    entries: AtomicU64,
}

impl Progress {
    pub fn entries(&self) -> u64 {
        self.entries.load(Ordering::Relaxed)
    }

    pub(super) fn reset(&self) {
        self.entries.store(0, Ordering::Relaxed);
    }

    fn add(&self, n: u64) {
        self.entries.fetch_add(n, Ordering::Relaxed);
    }
}

/// Entries that were parsed, and how many were skipped as malformed.
pub(super) struct Fetched<T> {
    pub items: Vec<T>,
    pub malformed: u64,
}

/// The bounds a listing must stay within, checked page by page.
struct Bounds<'a> {
    path: &'a str,
    pages: u64,
    entries: u64,
    bytes: u64,
    /// A hash of every page URL asked for: one seen again is a loop. Hashes,
    /// because a server can make page URLs (cursors) hundreds of KB long.
    visited: HashSet<u64>,
}

impl<'a> Bounds<'a> {
    fn new(path: &'a str) -> Bounds<'a> {
        Bounds {
            path,
            pages: 0,
            entries: 0,
            bytes: 0,
            visited: HashSet::new(),
        }
    }

    fn fail(&self, why: String) -> Error {
        Error::InvalidResponse(format!(
            "{}: {why}; the listing was abandoned after {} pages and {} entries",
            self.path, self.pages, self.entries
        ))
    }

    /// Before asking for `url`.
    fn visit(&mut self, url: &Url) -> Result<()> {
        if self.pages >= MAX_PAGES {
            return Err(self.fail(format!("more than {MAX_PAGES} pages")));
        }
        let mut hash = std::hash::DefaultHasher::new();
        url.as_str().hash(&mut hash);
        if !self.visited.insert(hash.finish()) {
            return Err(self.fail("the next page is one already listed (a pagination loop)".into()));
        }
        self.pages += 1;
        Ok(())
    }

    /// The total the server announces.
    fn announced(&self, total: Option<u64>) -> Result<()> {
        match total {
            Some(t) if t > MAX_ENTRIES => Err(self.fail(format!(
                "the API announces {t} entries; ocxfs lists at most {MAX_ENTRIES}"
            ))),
            _ => Ok(()),
        }
    }

    /// After a page of `bytes` with `entries` entries.
    fn received(&mut self, bytes: u64, entries: u64) -> Result<()> {
        self.bytes += bytes;
        self.entries += entries;
        if self.entries > MAX_ENTRIES {
            return Err(self.fail(format!("more than {MAX_ENTRIES} entries")));
        }
        if self.bytes > MAX_LISTING_BYTES {
            return Err(self.fail(format!("more than {MAX_LISTING_BYTES} bytes")));
        }
        Ok(())
    }
}

/// Raw control bytes (newlines included) are whitespace between JSON
/// tokens but invalid inside strings, where one in one name would fail the
/// whole page. As spaces they mean the same between tokens, and a name gets
/// a space (which naming keeps or makes safe) instead of failing the page.
fn blank_control_bytes(body: &mut [u8], what: &str) {
    let mut unusual = 0u64;
    for b in body.iter_mut().filter(|b| **b < 0x20) {
        unusual += u64::from(!matches!(*b, b'\n' | b'\r' | b'\t'));
        *b = b' ';
    }
    if unusual > 0 {
        tracing::warn!(
            listing = what,
            unusual,
            "the API sent raw control bytes; replaced by spaces"
        );
    }
}

impl ApiClient {
    /// Fetch every page of a listing: with `Paging::Cursor`, ask for cursor
    /// pagination and follow `X-Next-Cursor`; otherwise (or when the API
    /// does not offer cursors) follow `Link: rel="next"`, stopping at
    /// `X-Total-Count` or on an empty page. One malformed entry is skipped
    /// (and counted), never hiding the rest of the account.
    pub(super) async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        paging: Paging,
    ) -> Result<Fetched<T>> {
        let mut url = self.url(path);
        url.query_pairs_mut()
            .append_pair("per_page", &PAGE_SIZE.to_string());
        if paging == Paging::Pages {
            url.query_pairs_mut().append_pair("page", "1");
        }
        let mut bounds = Bounds::new(path);
        let mut fetched = Fetched {
            items: Vec::new(),
            malformed: 0,
        };
        loop {
            bounds.visit(&url)?;
            let mut req = self.request(Method::GET, url.clone());
            if paging == Paging::Cursor {
                req = req.header("X-Pagination-Style", "cursor");
            }
            let resp = self.send(req).await?;
            let total = pagination::total_count(resp.headers());
            bounds.announced(total)?;
            let cursor = pagination::next_cursor(resp.headers());
            let next = pagination::next_link(resp.headers(), &url)?;
            let mut body = super::read_bounded(resp, MAX_PAGE_BYTES, path).await?;
            blank_control_bytes(&mut body, path);
            let batch: Vec<Box<RawValue>> = super::parse_json(&body, path)?;
            bounds.received(body.len() as u64, batch.len() as u64)?;
            self.progress.add(batch.len() as u64);
            let empty = batch.is_empty();
            for raw in batch {
                match serde_json::from_str::<T>(raw.get()) {
                    Ok(item) => fetched.items.push(item),
                    Err(e) => {
                        fetched.malformed += 1;
                        tracing::warn!(listing = path, error = %e, "skipping an entry the API sent malformed");
                    }
                }
            }
            let done = empty || total.is_some_and(|t| bounds.entries >= t);
            url = match (cursor, next) {
                _ if done => break,
                (Some(cursor), _) => pagination::with_param(&url, "cursor", &cursor),
                (None, Some(next)) => {
                    pagination::check_same_origin(&self.base, &next)?;
                    next
                }
                // No Link but the total says more: ask for the next page number.
                (None, None) if total.is_some() && paging == Paging::Pages => {
                    pagination::with_param(&url, "page", &(bounds.pages + 1).to_string())
                }
                (None, None) => break,
            };
        }
        Ok(fetched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_control_bytes_do_not_fail_a_page() {
        let mut page =
            b"[\n\t{\"$uri\": \"/x/a1\", \"name\": \"two\nlines\x01\"},\r\n\x02{}]".to_vec();
        assert!(serde_json::from_slice::<Vec<Box<RawValue>>>(&page).is_err());
        blank_control_bytes(&mut page, "/x");
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&page).unwrap();
        assert_eq!(entries[0]["name"], "two lines ");
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn a_page_seen_again_is_a_loop() {
        let mut b = Bounds::new("/api/v1/documents");
        let one = Url::parse("http://h/api/v1/documents?page=1").unwrap();
        let two = Url::parse("http://h/api/v1/documents?page=2").unwrap();
        b.visit(&one).unwrap();
        b.visit(&two).unwrap();
        let e = b.visit(&one).unwrap_err().to_string();
        assert!(e.contains("pagination loop"), "{e}");
        assert!(e.contains("after 2 pages"), "{e}");
    }

    #[test]
    fn entries_bytes_and_announced_totals_are_bounded() {
        let mut b = Bounds::new("/x");
        b.received(10, MAX_ENTRIES).unwrap();
        assert!(b.received(10, 1).is_err());
        let mut b = Bounds::new("/x");
        assert!(b.received(MAX_LISTING_BYTES + 1, 0).is_err());
        assert!(b.announced(Some(MAX_ENTRIES)).is_ok());
        assert!(b.announced(Some(u64::MAX)).is_err());
        assert!(b.announced(None).is_ok());
    }

    #[test]
    fn pages_are_bounded() {
        let mut b = Bounds::new("/x");
        for i in 0..MAX_PAGES {
            b.visit(&Url::parse(&format!("http://h/x?page={i}")).unwrap())
                .unwrap();
        }
        let e = b.visit(&Url::parse("http://h/x?page=new").unwrap());
        assert!(e.unwrap_err().to_string().contains("pages"));
    }
}
