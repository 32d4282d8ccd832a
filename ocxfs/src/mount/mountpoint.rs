//! Checks of the mount point before mounting, dead FUSE mounts included.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::readiness::Readiness;
use super::unmount::detach;
use crate::platform::{is_dead_mount_error, is_mount_point};

/// Check the mount point: it must exist and be a directory, not be a live
/// mount, and be empty unless `allow_non_empty` (mounting would hide its
/// files). A dead FUSE mount left by a killed ocxfs is cleared.
pub(super) fn check_mountpoint(
    path: &Path,
    allow_non_empty: bool,
    ready: &mut Readiness,
) -> Result<PathBuf, String> {
    let dead = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => false,
        Ok(_) => return Err(format!("mount point {} is not a directory", path.display())),
        Err(e) if is_dead_mount_error(&e) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("mount point {} does not exist", path.display()));
        }
        Err(e) => return Err(format!("mount point {}: {e}", path.display())),
    };
    // The kernel may answer `stat` of a dead mount's root from its cache:
    // only listing it tells a dead mount from a live one.
    let dead = dead || (is_mount_point(&absolute(path)) && !answers(path));
    if dead {
        tracing::warn!(
            "{} is a dead FUSE mount (its process died); clearing it",
            path.display()
        );
        detach(path);
        if std::fs::metadata(path).is_err() || is_mount_point(&absolute(path)) {
            return Err(format!(
                "mount point {} is a dead mount that could not be cleared",
                path.display()
            ));
        }
        ready.note(&format!(
            "cleared a stale mount at {} (its ocxfs process had died)",
            path.display()
        ));
    }
    let path = path
        .canonicalize()
        .map_err(|e| format!("mount point {}: {e}", path.display()))?;
    if is_mount_point(&path) {
        return Err(format!("{} is already a mount point", path.display()));
    }
    let mut entries =
        std::fs::read_dir(&path).map_err(|e| format!("mount point {}: {e}", path.display()))?;
    if !allow_non_empty && entries.next().is_some() {
        return Err(format!(
            "mount point {} is not empty (its files would be hidden): pass --allow-non-empty to \
             mount over them",
            path.display()
        ));
    }
    Ok(path)
}

/// `path` as the mount table names it: absolute, symbolic links resolved
/// (macOS's /tmp is /private/tmp), without touching `path` itself (a dead
/// mount fails any stat).
pub(super) fn absolute(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => parent
            .canonicalize()
            .map_or_else(|_| absolute.clone(), |p| p.join(name)),
        _ => absolute,
    }
}

/// Whether a mounted directory can be listed: a dead FUSE mount answers
/// with an error of its own (ENOTCONN on Linux). A mount that does not
/// answer within 2 s counts as alive (it may just be busy), so it is never
/// cleared by mistake.
fn answers(path: &Path) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = path.to_owned();
    std::thread::spawn(move || {
        let dead = matches!(std::fs::read_dir(&probe), Err(e) if is_dead_mount_error(&e));
        let _ = tx.send(!dead);
    });
    rx.recv_timeout(Duration::from_secs(2)).unwrap_or(true)
}
