//! Records the commit ocxfs is built from, for `ocxfs --version`.
//!
//! `OCXFS_COMMIT` from the environment wins (for packagers building from a
//! tarball); else `git rev-parse` of the checkout; else it says "commit
//! unknown".

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=OCXFS_COMMIT");
    let commit = std::env::var("OCXFS_COMMIT").ok().or_else(|| {
        // Rebuild when HEAD moves: a new commit or another branch.
        for path in ["HEAD", "packed-refs"] {
            if let Some(p) = git(&["rev-parse", "--git-path", path]) {
                println!("cargo:rerun-if-changed={p}");
            }
        }
        if let Some(p) =
            git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r]))
        {
            println!("cargo:rerun-if-changed={p}");
        }
        git(&["rev-parse", "--short=12", "HEAD"])
    });
    let commit = commit.map_or_else(|| "commit unknown".into(), |c| format!("commit {c}"));
    println!("cargo:rustc-env=OCXFS_COMMIT={commit}");
}
