//! `ocxfs prefetch PATH…`: read files through the mount so that they land
//! in its caches (the disk cache, with `--cache-dir`), telling first how
//! many charging POSTs that takes.
//!
//! Not to be confused with read-ahead inside the daemon (`readahead`):
//! this is a client command that reads whole files through a mount.

use std::collections::HashSet;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::catalog::{BY_ID_DIR, CONTROL_DIR, STATS_FILE};
use crate::fs::POST_NEEDED_XATTR;
use crate::size::format_size;

/// A document's download limit, as the listing gives it.
const DOWNLOADS_REMAINING_XATTR: &str = "user.onecodex.downloads_remaining";

#[derive(clap::Args, Debug)]
pub struct PrefetchArgs {
    /// Files or directories inside an ocxfs mount
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Do not ask before making POSTs
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Files read at once
    #[arg(long, short = 'j', default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Say how many files, bytes and POSTs it would take, and stop there
    #[arg(long)]
    pub dry_run: bool,
}

struct Target {
    path: PathBuf,
    size: u64,
    posts: bool,
    /// Why the mount refuses to POST for it (`user.ocxfs.post_needed`).
    refused: Option<String>,
    /// The document's own download limit, if it has one.
    downloads_remaining: Option<u64>,
}

/// Files under `paths`, each inode once (the same file is reachable by
/// name, by id, by project and by tag).
fn collect(paths: &[PathBuf]) -> Result<Vec<Target>, String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(path) = stack.pop() {
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n != CONTROL_DIR && n != BY_ID_DIR)
                })
                .collect();
            children.sort();
            stack.extend(children.into_iter().rev());
        } else if seen.insert((meta.dev(), meta.ino())) {
            let needed = read_xattr(&path, POST_NEEDED_XATTR)
                .ok_or_else(|| format!("{} is not in an ocxfs mount", path.display()))?;
            let downloads_remaining =
                read_xattr(&path, DOWNLOADS_REMAINING_XATTR).and_then(|n| n.parse().ok());
            out.push(Target {
                path,
                size: meta.len(),
                posts: needed == "yes",
                refused: needed.strip_prefix("refused: ").map(str::to_owned),
                downloads_remaining,
            });
        }
    }
    Ok(out)
}

/// One extended attribute of `path`, `None` when it has none by that name
/// or cannot tell.
fn read_xattr(path: &Path, name: &str) -> Option<String> {
    let value = xattr::get(path, name).ok().flatten()?;
    Some(String::from_utf8_lossy(&value).into_owned())
}

/// How far the reading has come: a bar on a terminal, and a line every
/// 10 s otherwise (the log of a batch job).
struct Progress {
    bar: ProgressBar,
    files: usize,
    /// Files finished, read or failed.
    finished: usize,
    last_line: Instant,
}

impl Progress {
    fn new(total: u64, files: usize) -> Progress {
        // Drawn on a terminal only: on anything else the bar stays hidden
        // but still measures the rate and the ETA for the lines.
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "  {bytes} / {total_bytes}  {percent}%  {bytes_per_sec}  ETA {eta}  ({msg} files)",
            )
            .expect("a valid progress template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            files,
            finished: 0,
            last_line: Instant::now(),
        }
    }

    /// One more file read (or failed).
    fn file_done(&mut self) {
        self.finished += 1;
        self.bar
            .set_message(format!("{}/{}", self.finished, self.files));
    }

    /// `bytes` more were read.
    fn advance(&mut self, bytes: u64) {
        self.bar.inc(bytes);
        if self.bar.is_hidden() && self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            let done = self.bar.position();
            let total = self.bar.length().unwrap_or(done).max(1);
            eprintln!(
                "  {} / {}  {}%  {}/s  ETA {} s  ({}/{} files)",
                format_size(done),
                format_size(total),
                100 * done / total,
                format_size(self.bar.per_sec() as u64),
                self.bar.eta().as_secs(),
                self.finished,
                self.files
            );
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn confirm(question: &str) -> Result<(), String> {
    if !std::io::stdin().is_terminal() {
        return Err("not asking on a non-interactive input: add --yes to go ahead".into());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err("nothing done".into())
    }
}

/// The mount holding `path`: the nearest ancestor with the daemon's files.
fn mount_root(path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    abs.ancestors()
        .find(|a| a.join(CONTROL_DIR).join(STATS_FILE).exists())
        .map(Path::to_owned)
}

pub fn run(args: &PrefetchArgs) -> Result<(), String> {
    let targets = collect(&args.paths)?;
    let root = mount_root(&args.paths[0])
        .ok_or_else(|| format!("{} is not in an ocxfs mount", args.paths[0].display()))?;
    let before = crate::stats::read(&root)?;
    if before.disk_cache.is_none() {
        eprintln!(
            "prefetch: note: this mount has no --cache-dir; the data stays in memory only, and not across remounts"
        );
    }
    let total: u64 = targets.iter().map(|t| t.size).sum();
    let posts = targets.iter().filter(|t| t.posts).count();
    eprintln!(
        "prefetch: {} files, {}; at most {posts} download_uri POSTs (each may incur retrieval charges)",
        targets.len(),
        format_size(total)
    );
    // A POST for a document with a download limit uses one of its downloads.
    let limited: Vec<&Target> = targets
        .iter()
        .filter(|t| t.posts && t.downloads_remaining.is_some())
        .collect();
    if !limited.is_empty() {
        let left: u64 = limited.iter().filter_map(|t| t.downloads_remaining).sum();
        eprintln!(
            "prefetch: {} of these POSTs are for documents with a download limit: they use {} of \
             the {left} downloads those documents have left (one each)",
            limited.len(),
            limited.len()
        );
    }
    for t in targets.iter().filter(|t| t.refused.is_some()) {
        let why = t.refused.as_deref().unwrap_or_default();
        eprintln!(
            "prefetch: {} will fail without a POST: {why}",
            t.path.display()
        );
    }
    if args.dry_run {
        eprintln!("prefetch: dry run: nothing read, no POST made");
        return Ok(());
    }
    if posts > 0 && !args.yes {
        confirm("Go ahead?")?;
    }
    let started = Instant::now();
    let progress = Mutex::new(Progress::new(total, targets.len()));
    let failed = Mutex::new(Vec::new());
    // `jobs` readers take the next file until none is left.
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.min(targets.len().max(1) as u16) {
            scope.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                while let Some(t) = targets.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let result = std::fs::File::open(&t.path).and_then(|mut f| {
                        loop {
                            let n = f.read(&mut buf)?;
                            if n == 0 {
                                return Ok(());
                            }
                            lock(&progress).advance(n as u64);
                        }
                    });
                    lock(&progress).file_done();
                    if let Err(e) = result {
                        lock(&failed).push(format!("{}: {e}", t.path.display()));
                    }
                }
            });
        }
    });
    let progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
    let failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    let done = progress.bar.position();
    // The summary below says it all: the bar goes.
    progress.bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "prefetch: {} of {} files read, {} in {secs:.1} s ({}/s)",
        targets.len() - failed.len(),
        targets.len(),
        format_size(done),
        format_size((done as f64 / secs.max(0.001)) as u64)
    );
    if let Ok(after) = crate::stats::read(&root) {
        eprintln!(
            "prefetch: {} download_uri POSTs made",
            after.posts - before.posts
        );
    }
    for f in &failed {
        eprintln!("  failed: {f}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} files could not be read", failed.len()))
    }
}
