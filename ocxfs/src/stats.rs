//! `ocxfs stats MOUNTPOINT`: the running daemon's counters, read from the
//! mount's `.ocxfs/stats.json`.

use std::path::Path;

use crate::catalog::{CONTROL_DIR, STATS_FILE};
use crate::metrics::Snapshot;
use crate::size::format_size;

pub fn read(mountpoint: &Path) -> Result<Snapshot, String> {
    let path = mountpoint.join(CONTROL_DIR).join(STATS_FILE);
    let text = std::fs::read(&path)
        .map_err(|e| format!("{} is not an ocxfs mount ({e})", mountpoint.display()))?;
    serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn rate(hits: u64, misses: u64) -> String {
    match hits + misses {
        0 => "-".into(),
        all => format!("{:.1}%", 100.0 * hits as f64 / all as f64),
    }
}

/// The human form of a snapshot.
pub fn render(s: &Snapshot, per_object: bool) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<28}{v}\n"));
    line(
        &mut out,
        "documents / samples",
        format!("{} / {}", s.documents, s.samples),
    );
    if s.listing_skipped > 0 {
        line(
            &mut out,
            "listing entries skipped",
            format!("{} (see the log)", s.listing_skipped),
        );
    }
    line(&mut out, "uptime", format!("{} s", s.uptime_seconds));
    line(
        &mut out,
        "POSTs (download_uri)",
        format!("{} ({} failed)", s.posts, s.post_failures),
    );
    line(&mut out, "presigned URLs reused", s.url_reuses.to_string());
    line(
        &mut out,
        "storage GETs",
        format!("{} ({} retries)", s.storage_gets, s.storage_retries),
    );
    line(
        &mut out,
        "bytes fetched from storage",
        format_size(s.bytes_fetched),
    );
    line(
        &mut out,
        "bytes served to readers",
        format_size(s.bytes_served),
    );
    line(
        &mut out,
        "block cache hit rate",
        format!(
            "{} ({} hits, {} misses)",
            rate(s.block_hits, s.block_misses),
            s.block_hits,
            s.block_misses
        ),
    );
    let m = &s.memory;
    line(
        &mut out,
        "memory",
        format!(
            "{} cached + {} in flight of {}; RSS {}",
            format_size(m.cached_bytes),
            format_size(m.in_flight_bytes),
            format_size(m.budget),
            format_size(m.rss_bytes)
        ),
    );
    if let Some(d) = &s.disk_cache {
        line(
            &mut out,
            "disk cache",
            format!(
                "{} of {} used; hit rate {} ({} hits, {} misses); {} damaged, {} write failures",
                format_size(d.used_bytes),
                format_size(d.max_bytes),
                rate(d.hits, d.misses),
                d.hits,
                d.misses,
                d.damaged_blocks,
                d.write_failures
            ),
        );
    }
    if let Some(b) = &s.guard.post_budget {
        line(
            &mut out,
            "POST budget",
            format!(
                "{} used, {} left of {} (next period in {} s)",
                b.used, b.left, b.budget, b.resets_in_seconds
            ),
        );
    }
    if let Some(c) = &s.guard.shared_cache {
        line(
            &mut out,
            "shared cache",
            format!(
                "{}; {} URLs from other nodes, {} leases, {} waits, {} local fallbacks",
                if c.available {
                    "available"
                } else {
                    "UNAVAILABLE"
                },
                c.hits,
                c.leases,
                c.waits,
                c.fallbacks
            ),
        );
    }
    let errors = if s.errors.is_empty() {
        "none".to_owned()
    } else {
        s.errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    line(&mut out, "errors", errors);
    if let Some(last) = &s.last_error {
        line(&mut out, "last error", last.clone());
    }
    if per_object {
        out.push_str("POSTs per object\n");
        for (object, n) in &s.posts_by_object {
            out.push_str(&format!("  {object}  {n}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter() {
        let mut s = Snapshot {
            posts: 3,
            bytes_fetched: 3 * 1024 * 1024,
            block_hits: 3,
            block_misses: 1,
            ..Snapshot::default()
        };
        s.errors.insert("timeout".into(), 2);
        s.last_error = Some("timed out: no data from storage for 30s".into());
        s.posts_by_object.insert("documents/abc".into(), 3);
        let text = render(&s, true);
        assert!(
            text.contains("POSTs (download_uri)        3 (0 failed)"),
            "{text}"
        );
        assert!(text.contains("3.0 MiB"));
        assert!(text.contains("75.0%"));
        assert!(text.contains("timeout: 2"));
        assert!(text.contains("last error"), "{text}");
        assert!(text.contains("timed out: no data from storage for 30s"));
        assert!(text.contains("documents/abc"));
        assert!(!render(&s, false).contains("documents/abc"));
        assert!(!text.contains("POST budget") && !text.contains("shared cache"));
        assert!(!text.contains("listing entries skipped"));
        s.listing_skipped = 2;
        assert!(render(&s, false).contains("listing entries skipped     2 (see the log)"));
        s.guard.post_budget = Some(crate::post_budget::BudgetStats {
            budget: "100/h".into(),
            used: 40,
            left: 60,
            resets_in_seconds: 5,
        });
        s.guard.shared_cache = Some(crate::shared_cache::SharedCacheStats {
            fallbacks: 2,
            ..Default::default()
        });
        let text = render(&s, false);
        assert!(text.contains("40 used, 60 left of 100/h"), "{text}");
        assert!(text.contains("UNAVAILABLE"), "{text}");
        assert!(text.contains("2 local fallbacks"), "{text}");
    }
}
