//! The POST guard's optional parts, from the mount arguments: the budget
//! (`--max-posts`) and the shared URL cache (`--shared-cache`).

use std::path::Path;
use std::time::Duration;

use crate::post_budget::PostBudget;
use crate::shared_cache::{SharedCache, SharedCacheConfig};
use crate::url_store;

use super::args::MountArgs;

/// Where the Redis password may come from besides a file.
pub const REDIS_PASSWORD_ENV: &str = "OCXFS_REDIS_PASSWORD";

/// How long a node's lease to POST lasts: far longer than a POST takes, and
/// the most a dead lease holder delays the others.
const LEASE: Duration = Duration::from_secs(10);

/// The budget, its count kept under the state directory per API base and
/// account (in memory only when there is no state directory).
pub fn budget(args: &MountArgs, api_base: &str, account: &str) -> Option<PostBudget> {
    let spec = args.max_posts.clone()?;
    let path = url_store::default_dir()
        .as_deref()
        .and_then(Path::parent)
        .map(|state| {
            state
                .join("posts")
                .join(format!("{}.json", url_store::key(api_base, account)))
        });
    if path.is_none() {
        tracing::warn!("no HOME or XDG_STATE_HOME: the POST count starts from zero at each mount");
    }
    Some(PostBudget::new(spec, path))
}

/// The shared cache, with its password from the file or the environment.
pub fn shared_cache(
    args: &MountArgs,
    api_base: &str,
    account: &str,
) -> Result<Option<SharedCache>, String> {
    let Some(url) = &args.shared_cache else {
        return Ok(None);
    };
    let password = match &args.shared_cache_password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--shared-cache-password-file {}: {e}", path.display()))?;
            let p = text.trim_end_matches(['\r', '\n']).to_owned();
            if p.is_empty() {
                return Err(format!(
                    "--shared-cache-password-file {} is empty",
                    path.display()
                ));
            }
            Some(p)
        }
        None => std::env::var(REDIS_PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty()),
    };
    SharedCache::new(SharedCacheConfig {
        url: url.clone(),
        password,
        namespace: url_store::key(api_base, account),
        lease: LEASE,
    })
    .map(Some)
    .map_err(|e| e.to_string())
}
