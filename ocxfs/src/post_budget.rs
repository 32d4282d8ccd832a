//! `--max-posts N/PERIOD`: the ceiling on `download_uri` POSTs per period,
//! counted in fixed windows and kept in the state directory.
//!
//! Windows are fixed and aligned to the Unix epoch: `N/day` allows N POSTs
//! from 00:00 to 24:00 UTC, `N/h` N per clock hour. Fixed windows are what
//! every node of a cluster can count the same way (one Redis counter per
//! window, expiring with it).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::private_file;

/// A parsed `N/PERIOD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpec {
    pub limit: u64,
    pub period: Duration,
    /// As the user wrote it, for messages.
    text: String,
}

impl std::fmt::Display for BudgetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// `2000/day`, `100/h`, `50/30min`, `10/90s`.
pub fn parse_spec(s: &str) -> Result<BudgetSpec, String> {
    let usage = || format!("{s:?} is not N/PERIOD (e.g. 2000/day, 100/h, 50/30min)");
    let (n, period) = s.trim().split_once('/').ok_or_else(usage)?;
    let limit: u64 = n.trim().parse().map_err(|_| usage())?;
    if limit == 0 {
        return Err(format!("{s:?}: the budget must allow at least one POST"));
    }
    let period = period.trim();
    let split = period
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(period.len());
    let (count, unit) = period.split_at(split);
    let count: u64 = match count {
        "" => 1,
        c => c.parse().map_err(|_| usage())?,
    };
    let unit_secs = match unit.trim() {
        "s" | "sec" | "second" | "seconds" => 1,
        "m" | "min" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return Err(usage()),
    };
    let secs = count
        .checked_mul(unit_secs)
        .filter(|s| *s > 0)
        .ok_or_else(usage)?;
    Ok(BudgetSpec {
        limit,
        period: Duration::from_secs(secs),
        text: s.trim().to_owned(),
    })
}

/// The state file: the window it counts and the POSTs made in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Count {
    period_secs: u64,
    window: u64,
    used: u64,
}

/// Used and left in the current window, for `ocxfs stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetStats {
    pub budget: String,
    pub used: u64,
    pub left: u64,
    pub resets_in_seconds: u64,
}

pub struct PostBudget {
    spec: BudgetSpec,
    /// Where the count survives a remount, when there is a state directory.
    path: Option<PathBuf>,
    count: Mutex<Count>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The largest state file read: anything bigger is not ours.
const MAX_STATE_BYTES: u64 = 4096;

impl PostBudget {
    /// The budget, with its count restored from `path` when that file holds
    /// this period's current window. A missing, oversized or garbled file
    /// counts from zero (with a warning for the last two).
    pub fn new(spec: BudgetSpec, path: Option<PathBuf>) -> PostBudget {
        let period_secs = spec.period.as_secs();
        let stored = path.as_deref().and_then(read_count);
        let window = now_unix() / period_secs;
        let count = stored
            .filter(|c| c.period_secs == period_secs && c.window == window)
            .unwrap_or(Count {
                period_secs,
                window,
                used: 0,
            });
        PostBudget {
            spec,
            path,
            count: Mutex::new(count),
        }
    }

    pub fn spec(&self) -> &BudgetSpec {
        &self.spec
    }

    /// The current window's number and the seconds until it ends.
    pub fn window(&self) -> (u64, u64) {
        let p = self.spec.period.as_secs();
        let now = now_unix();
        (now / p, p - now % p)
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Count> {
        let mut c = self.count.lock().expect("post budget poisoned");
        let (window, _) = self.window();
        if c.window != window {
            c.window = window;
            c.used = 0;
        }
        c
    }

    /// The error for a spent budget (logged once per refused open by the caller).
    pub fn spent(&self) -> Error {
        Error::PostBudgetSpent {
            budget: self.spec.to_string(),
            wait_secs: self.window().1,
        }
    }

    /// Counts one POST against this mount's own count, or refuses it.
    pub fn spend_local(&self) -> Result<(), Error> {
        let mut c = self.current();
        if c.used >= self.spec.limit {
            return Err(self.spent());
        }
        c.used += 1;
        self.save(&c);
        Ok(())
    }

    /// Records the count the cluster reached (a shared counter said `used`
    /// in `window`, this POST included), so that stats and a remount
    /// without Redis start from it.
    pub fn note_shared(&self, window: u64, used: u64) {
        let mut c = self.current();
        if c.window == window && used > c.used {
            c.used = used;
            self.save(&c);
        }
    }

    /// Whether an open that needs a POST would be refused now.
    pub fn is_spent(&self) -> bool {
        self.current().used >= self.spec.limit
    }

    pub fn stats(&self) -> BudgetStats {
        let used = self.current().used;
        BudgetStats {
            budget: self.spec.to_string(),
            used,
            left: self.spec.limit.saturating_sub(used),
            resets_in_seconds: self.window().1,
        }
    }

    fn save(&self, c: &Count) {
        let Some(path) = &self.path else { return };
        let json = serde_json::to_vec(c).expect("a count serializes");
        if let Err(e) = path
            .parent()
            .map_or(Ok(()), private_file::create_dir)
            .and_then(|()| private_file::write_atomic(path, &[&json]))
        {
            // The budget still holds for this mount; only a remount forgets.
            tracing::warn!("cannot save the POST count to {}: {e}", path.display());
        }
    }
}

fn read_count(path: &Path) -> Option<Count> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read the POST count in {}: {e}", path.display());
            return None;
        }
    };
    let mut bytes = Vec::new();
    let read = file.take(MAX_STATE_BYTES + 1).read_to_end(&mut bytes);
    let parsed = read
        .ok()
        .filter(|_| bytes.len() as u64 <= MAX_STATE_BYTES)
        .and_then(|_| serde_json::from_slice::<Count>(&bytes).ok())
        .filter(|c| c.period_secs > 0);
    if parsed.is_none() {
        tracing::warn!(
            "the POST count in {} is not readable; counting from zero",
            path.display()
        );
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn specs() {
        let s = parse_spec("2000/day").unwrap();
        assert_eq!((s.limit, s.period), (2000, Duration::from_secs(86_400)));
        assert_eq!(
            parse_spec("100/h").unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(
            parse_spec("5/30min").unwrap().period,
            Duration::from_secs(1800)
        );
        assert_eq!(parse_spec(" 7/90s ").unwrap().to_string(), "7/90s");
        for bad in [
            "",
            "100",
            "0/h",
            "x/h",
            "10/fortnight",
            "10/0h",
            "-1/h",
            "10/h/2",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn n_posts_then_the_clear_error_and_the_count_survives_a_remount() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/posts/abc.json");
        let spec = parse_spec("3/day").unwrap();
        let b = PostBudget::new(spec.clone(), Some(path.clone()));
        for _ in 0..2 {
            b.spend_local().unwrap();
        }
        assert!(!b.is_spent());
        let again = PostBudget::new(spec.clone(), Some(path.clone()));
        assert_eq!(again.stats().used, 2);
        again.spend_local().unwrap();
        let err = again.spend_local().unwrap_err();
        assert_eq!(err.errno(), libc::EDQUOT);
        assert!(err.to_string().contains("--max-posts"), "{err}");
        assert!(again.is_spent());
        assert_eq!(again.stats().left, 0);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Another period length starts its own count.
        let hourly = PostBudget::new(parse_spec("3/h").unwrap(), Some(path));
        assert_eq!(hourly.stats().used, 0);
    }

    #[test]
    fn a_garbled_or_huge_state_file_counts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        for content in [b"{garbage".to_vec(), vec![b' '; 10_000]] {
            std::fs::write(&path, content).unwrap();
            let b = PostBudget::new(parse_spec("1/h").unwrap(), Some(path.clone()));
            assert_eq!(b.stats().used, 0);
            b.spend_local().unwrap();
            assert!(b.spend_local().is_err());
        }
    }

    #[test]
    fn a_shared_count_raises_the_local_one() {
        let b = PostBudget::new(parse_spec("10/day").unwrap(), None);
        let (window, _) = b.window();
        b.note_shared(window, 7);
        assert_eq!(b.stats().used, 7);
        b.note_shared(window, 3);
        assert_eq!(b.stats().used, 7);
        b.note_shared(window - 1, 9);
        assert_eq!(b.stats().used, 7);
    }
}
