//! The presigned-URL cache every node of an account shares through Redis
//! (`--shared-cache`), so that a cluster pays one POST per object.
//!
//! Protocol, per object: `GET` its URL; if there is none (and no shared
//! failure), take a lease with `SET … NX PX`; only the lease holder POSTs,
//! then publishes the URL with a TTL of its remaining usable life (or a
//! failed POST's answer for the negative-cache time). The others poll,
//! bounded, for what it publishes. A URL storage calls expired is removed
//! with a compare-and-delete of exactly that URL, so the nodes that saw the
//! same expiry agree on one new lease, hence one POST. A lease holder that
//! dies costs one more POST once its lease runs out.
//!
//! Redis is never a single point of failure: an error or a slow answer
//! (every command has a deadline) makes the node fall back to its own
//! single flight, logged once, counted in the stats, and Redis is tried
//! again after a pause. Keys are namespaced by a hash of API base and
//! account. URLs are secrets: never logged.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo, Script};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::Error;

/// Longest wait for any one Redis command (connecting included): a busy
/// Redis answers in milliseconds, so this is only ever reached by one that
/// is down or unreachable.
const COMMAND_DEADLINE: Duration = Duration::from_secs(2);
/// After a failure, Redis is left alone this long.
const RETRY_AFTER: Duration = Duration::from_secs(15);
/// How often a node waiting for another node's POST looks again.
const POLL: Duration = Duration::from_millis(25);

/// For one object: its URL (KEYS[1]) with its TTL, else its shared failure
/// (KEYS[2]), else the lease (KEYS[3]) taken for ARGV[1] for ARGV[2] ms,
/// else nothing (another node holds the lease). One script, so that no
/// URL can be published between the look and the lease.
const FIND: &str = r"
local url = redis.call('GET', KEYS[1])
if url then
  return {1, url, redis.call('PTTL', KEYS[1])}
end
local failure = redis.call('GET', KEYS[2])
if failure then
  return {2, failure, 0}
end
if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {3, '', 0}
end
return {0, '', 0}";

/// Deletes KEYS[1] only if it still holds ARGV[1].
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Counts one POST in KEYS[1] unless ARGV[1] are counted already; the
/// counter lives ARGV[2] ms. Answers the new count, or minus the count when
/// the budget is spent.
const SPEND: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then
  return -n
end
n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n";

/// Where the shared cache is and how to log in.
pub struct SharedCacheConfig {
    /// `redis://[user@]host:port/db` or `rediss://…` (TLS); no password.
    pub url: String,
    /// From a file or the environment, never the command line.
    pub password: Option<String>,
    /// Hash of API base and account: the keys' namespace.
    pub namespace: String,
    /// How long a lease lasts: longer than a POST normally takes.
    pub lease: Duration,
}

/// What the cluster knows of an object, for a node that has no valid URL.
#[derive(Debug)]
pub enum Found {
    /// Another node's URL, usable this much longer.
    Url { url: String, remaining: Duration },
    /// Another node's POST failed like this, recently.
    Failed(Error),
    /// This node holds the lease: it POSTs, then calls `publish`.
    Lease(Lease),
    /// Redis is unavailable or the wait ran out: this node POSTs on its own.
    Local,
}

/// The right to POST for one object, until it runs out.
#[derive(Debug)]
pub struct Lease {
    key: String,
    token: String,
}

/// A failed POST as it is shared (402, 403 and 404 only).
#[derive(Serialize, Deserialize)]
struct SharedFailure {
    status: u16,
    message: String,
}

impl SharedFailure {
    fn of(e: &Error) -> Option<SharedFailure> {
        let (status, message) = match e {
            Error::PaymentRequired(m) => (402, m),
            Error::Forbidden(m) => (403, m),
            Error::NotFound(m) => (404, m),
            _ => return None,
        };
        Some(SharedFailure {
            status,
            message: message.clone(),
        })
    }

    fn error(self) -> Error {
        match self.status {
            402 => Error::PaymentRequired(self.message),
            403 => Error::Forbidden(self.message),
            _ => Error::NotFound(self.message),
        }
    }
}

/// What `ocxfs stats` shows of the shared cache.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedCacheStats {
    /// URLs (or failures) taken from another node instead of a POST.
    pub hits: u64,
    /// Leases this node took (each followed by its POST).
    pub leases: u64,
    /// Times this node waited for another node's POST.
    pub waits: u64,
    /// Times Redis failed or the wait ran out, so this node POSTed alone.
    pub fallbacks: u64,
    /// Whether the last command reached Redis.
    pub available: bool,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    leases: AtomicU64,
    waits: AtomicU64,
    fallbacks: AtomicU64,
}

pub struct SharedCache {
    client: redis::Client,
    namespace: String,
    lease: Duration,
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Set while Redis is left alone after a failure.
    resting_until: Mutex<Option<Instant>>,
    /// Whether "unavailable" was logged and "available again" is owed.
    down: AtomicBool,
    find: Script,
    compare_and_delete: Script,
    spend: Script,
    counters: Counters,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().clamp(1, u128::from(u64::MAX)) as u64
}

impl SharedCache {
    /// Checks the URL; connects only when first used.
    pub fn new(config: SharedCacheConfig) -> Result<SharedCache, Error> {
        let bad = |m: String| Error::Config(format!("--shared-cache: {m}"));
        if !(config.url.starts_with("redis://") || config.url.starts_with("rediss://")) {
            return Err(bad("the URL must start with redis:// or rediss://".into()));
        }
        let info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| bad(e.to_string()))?;
        if info.redis_settings().password().is_some() {
            return Err(bad(
                "a password in the URL would show in ps and fstab; use \
                 --shared-cache-password-file or OCXFS_REDIS_PASSWORD"
                    .into(),
            ));
        }
        let info = match config.password {
            Some(p) => {
                let settings = info.redis_settings().clone().set_password(p);
                info.set_redis_settings(settings)
            }
            None => info,
        };
        let client = redis::Client::open(info).map_err(|e| bad(e.to_string()))?;
        Ok(SharedCache {
            client,
            namespace: format!("ocxfs:{}:", config.namespace),
            lease: config.lease,
            connection: tokio::sync::Mutex::new(None),
            resting_until: Mutex::new(None),
            down: AtomicBool::new(false),
            find: Script::new(FIND),
            compare_and_delete: Script::new(COMPARE_AND_DELETE),
            spend: Script::new(SPEND),
            counters: Counters::default(),
        })
    }

    /// The object in braces: a Redis Cluster keeps one object's keys in
    /// one slot, as its scripts need.
    fn key(&self, what: &str, object: &str) -> String {
        format!("{}{{{object}}}:{what}", self.namespace)
    }

    fn resting(&self) -> bool {
        let mut until = self.resting_until.lock().expect("shared cache poisoned");
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    /// Redis failed: fall back, say so once, rest.
    fn failed(&self, why: &str) {
        *self.resting_until.lock().expect("shared cache poisoned") =
            Some(Instant::now() + RETRY_AFTER);
        if !self.down.swap(true, Relaxed) {
            tracing::warn!(
                "shared cache unavailable ({why}): this node POSTs on its own and tries \
                 Redis again every {} s",
                RETRY_AFTER.as_secs()
            );
        }
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        if self.resting() {
            return None;
        }
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_DEADLINE))
            .set_response_timeout(Some(COMMAND_DEADLINE));
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(COMMAND_DEADLINE * 2, connect).await {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("no connection within its deadline");
                None
            }
        }
    }

    /// One command (or pipeline, or script) with its deadline; `None` when
    /// Redis is unavailable.
    async fn run<T, F>(&self, command: impl FnOnce(MultiplexedConnection) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let c = self.connection().await?;
        let why = match tokio::time::timeout(COMMAND_DEADLINE, command(c)).await {
            Ok(Ok(v)) => {
                if self.down.swap(false, Relaxed) {
                    tracing::info!("shared cache available again");
                }
                return Some(v);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no answer within its deadline".to_owned(),
        };
        *self.connection.lock().await = None;
        self.failed(&why);
        None
    }

    fn fallback(&self) -> Found {
        self.counters.fallbacks.fetch_add(1, Relaxed);
        Found::Local
    }

    /// What to do for `object` (`documents/<id>`), which this node has no
    /// valid URL for. Waits for another node's POST at most the lease time
    /// plus a little: a dead holder's lease runs out within it.
    pub async fn find(&self, object: &str) -> Found {
        let (url_key, fail_key, lease_key) = (
            self.key("url", object),
            self.key("fail", object),
            self.key("lease", object),
        );
        let token = format!("{:016x}.{}", rand::random::<u64>(), std::process::id());
        let deadline = Instant::now() + self.lease + Duration::from_secs(2);
        let mut waited = false;
        loop {
            let seen = self
                .run(|mut c| {
                    let (u, f, l) = (url_key.clone(), fail_key.clone(), lease_key.clone());
                    let (t, px) = (token.clone(), ms(self.lease));
                    async move {
                        self.find
                            .key(u)
                            .key(f)
                            .key(l)
                            .arg(t)
                            .arg(px)
                            .invoke_async::<(i64, String, i64)>(&mut c)
                            .await
                    }
                })
                .await;
            let Some((found, value, pttl)) = seen else {
                return self.fallback();
            };
            match found {
                1 if pttl > 0 => {
                    self.counters.hits.fetch_add(1, Relaxed);
                    let remaining = Duration::from_millis(pttl as u64);
                    return Found::Url {
                        url: value,
                        remaining,
                    };
                }
                2 => {
                    if let Ok(f) = serde_json::from_str::<SharedFailure>(&value) {
                        self.counters.hits.fetch_add(1, Relaxed);
                        return Found::Failed(f.error());
                    }
                }
                3 => {
                    self.counters.leases.fetch_add(1, Relaxed);
                    return Found::Lease(Lease {
                        key: lease_key,
                        token,
                    });
                }
                _ => {}
            }
            if !waited {
                waited = true;
                self.counters.waits.fetch_add(1, Relaxed);
            }
            if Instant::now() + POLL > deadline {
                tracing::info!(%object, "no URL from the lease holder in time; POSTing here");
                return self.fallback();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The lease holder's POST gave `url`, usable `remaining` longer.
    pub async fn publish(&self, object: &str, lease: Lease, url: &str, remaining: Duration) {
        if !remaining.is_zero() {
            let (k, f) = (self.key("url", object), self.key("fail", object));
            self.run(|mut c| async move {
                redis::pipe()
                    .set_options(
                        &k,
                        url,
                        redis::SetOptions::default()
                            .with_expiration(redis::SetExpiry::PX(ms(remaining))),
                    )
                    .del(&f)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        }
        self.release(lease).await;
    }

    /// The lease holder's POST failed: 402, 403 and 404 are shared for
    /// `ttl` (the negative-cache time), so the other nodes do not try.
    pub async fn publish_failure(&self, object: &str, lease: Lease, error: &Error, ttl: Duration) {
        if let Some(json) = SharedFailure::of(error).and_then(|f| serde_json::to_string(&f).ok()) {
            let k = self.key("fail", object);
            self.run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&k)
                    .arg(json)
                    .arg("PX")
                    .arg(ms(ttl))
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
        }
        self.release(lease).await;
    }

    /// Gives the lease up without publishing anything.
    pub async fn release(&self, lease: Lease) {
        self.run(|mut c| async move {
            self.compare_and_delete
                .key(&lease.key)
                .arg(&lease.token)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await;
    }

    /// Storage called `stale` expired: remove it if it is still the shared
    /// URL (another node may have replaced it already).
    pub async fn expired(&self, object: &str, stale: &str) {
        let k = self.key("url", object);
        self.run(|mut c| async move {
            self.compare_and_delete
                .key(&k)
                .arg(stale)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await;
    }

    /// Counts one POST in the cluster's window `window` of `period` against
    /// `limit`: `Some(Ok(used))`, `Some(Err(used))` when spent, `None` when
    /// Redis is unavailable.
    pub async fn spend(
        &self,
        period: Duration,
        window: u64,
        limit: u64,
    ) -> Option<Result<u64, u64>> {
        let k = format!("{}posts:{}:{window}", self.namespace, period.as_secs());
        // The counter outlives its window a little: clocks differ.
        let life = ms(period + Duration::from_secs(60));
        let n = self
            .run(|mut c| async move {
                self.spend
                    .key(&k)
                    .arg(limit)
                    .arg(life)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?;
        Some(if n > 0 {
            Ok(n as u64)
        } else {
            Err(n.unsigned_abs())
        })
    }

    pub fn stats(&self) -> SharedCacheStats {
        let c = &self.counters;
        SharedCacheStats {
            hits: c.hits.load(Relaxed),
            leases: c.leases.load(Relaxed),
            waits: c.waits.load(Relaxed),
            fallbacks: c.fallbacks.load(Relaxed),
            available: !self.down.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> SharedCacheConfig {
        SharedCacheConfig {
            url: url.to_owned(),
            password: None,
            namespace: "test".into(),
            lease: Duration::from_secs(1),
        }
    }

    #[test]
    fn urls_are_checked_and_passwords_stay_off_the_command_line() {
        assert!(SharedCache::new(config("redis://127.0.0.1:6379/0")).is_ok());
        assert!(SharedCache::new(config("rediss://cache.example:6380/2")).is_ok());
        assert!(SharedCache::new(config("redis://ocxfs@127.0.0.1:6379/0")).is_ok());
        for bad in [
            "http://127.0.0.1:6379",
            "127.0.0.1:6379",
            "redis://u:secret@h:1/0",
        ] {
            let e = SharedCache::new(config(bad)).err().expect(bad);
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn only_definite_refusals_are_shared() {
        for e in [
            Error::PaymentRequired("p".into()),
            Error::Forbidden("f".into()),
            Error::NotFound("n".into()),
        ] {
            let back = SharedFailure::of(&e).unwrap().error();
            assert_eq!(back.to_string(), e.to_string());
        }
        assert!(SharedFailure::of(&Error::Timeout("t".into())).is_none());
        assert!(
            SharedFailure::of(&Error::Server {
                status: 503,
                message: String::new()
            })
            .is_none()
        );
    }

    #[tokio::test]
    async fn a_redis_that_is_not_there_means_posting_locally_at_once() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cache = SharedCache::new(config(&format!("redis://127.0.0.1:{port}/0"))).unwrap();
        assert!(matches!(cache.find("documents/a").await, Found::Local));
        // Resting now: the next lookup does not even try.
        assert!(matches!(cache.find("documents/b").await, Found::Local));
        assert_eq!(cache.spend(Duration::from_secs(60), 1, 5).await, None);
        let s = cache.stats();
        assert_eq!((s.fallbacks, s.available), (2, false));
    }
}
