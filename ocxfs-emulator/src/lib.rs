//! A fake One Codex API plus the S3-like storage behind its presigned URLs,
//! with counters and fault injection: ocxfs's test bed, benchmark server and
//! offline demo.
//!
//! Routes: `/api/v1/...` (API, needs the key: account, documents, samples,
//! projects, tags), `/storage/{id}/{name}?...` (presigned URLs, no key),
//! `/_emulator/...` (counters and control, no key: `stats`, `reset-stats`,
//! `expire`, `faults`, `documents/{id}/change`, `samples/{id}/change`,
//! `POST documents` to add one, `DELETE documents/{id}` or `samples/{id}`,
//! `POST documents/{id}/terms` to set its download terms).

mod api;
mod control;
mod demo;
mod faults;
pub mod fixtures;
mod generate;
pub mod hostile;
mod net;
mod range;
mod stats;
mod storage;
mod store;
mod synthetic;
mod terms;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use stats::{ApiRequests, Stats};

/// The key the emulator accepts by default (API keys are 32 characters).
pub const DEMO_API_KEY: &str = "0cxf5dem0000000000000000000000ke";

#[derive(clap::Args, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Serve every regular file under DIR (recursively) as a document; without it, built-in demo documents
    #[arg(long, value_name = "DIR")]
    pub docs: Option<PathBuf>,
    /// JSON manifest overriding document attributes: [{"path", "filename", "null_size", "id", "created_at", "downloads_remaining", "valid_until"}]
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Real lifetime of presigned URLs in seconds
    #[arg(long, default_value_t = 3600)]
    pub url_ttl: u64,
    /// API key that API routes accept
    #[arg(long, env = "OCXFS_EMULATOR_API_KEY", default_value = DEMO_API_KEY, hide_env_values = true)]
    pub api_key: String,
    /// Delay added before the first byte of every storage response
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Per-connection storage bandwidth limit in bytes/s
    #[arg(long)]
    pub bandwidth: Option<u64>,
    /// Shuffle the listing order with this seed (same seed -> same order; pagination stays consistent)
    #[arg(long)]
    pub shuffle_seed: Option<u64>,
    /// Fault to inject, repeatable, e.g. "storage_status:status=503,probability=0.02"
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// Presigned URLs point at URL/<path under --docs>?X-Amz-... instead of the emulator's own storage
    #[arg(
        long,
        value_name = "URL",
        requires = "docs",
        long_help = "With --docs: presigned download_uri values point at \
                     URL/<relative path of the file under --docs, percent-encoded per segment>?X-Amz-... \
                     (same query as the emulator's own storage URLs) instead of the emulator's own \
                     /storage/ route, so that another server (e.g. nginx) serving the same DIR is the \
                     storage in benchmarks. The download_uri POSTs are still counted; storage counters \
                     and storage faults then only see requests that reach the emulator. Objects that \
                     are not files under --docs (samples elsewhere, generated or added ones) keep \
                     emulator storage URLs."
    )]
    pub storage_base: Option<String>,
    /// Serve every regular file under DIR (recursively) as an available, private sample
    #[arg(long, value_name = "DIR")]
    pub samples: Option<PathBuf>,
    /// JSON manifest of projects, tags and sample attributes: {"projects": [...], "tags": [...], "samples": [{"path" (or null: no content), "filename", "status", "visibility", "project", "tags", "null_size", "id", "created_at"}]}
    #[arg(long, value_name = "FILE")]
    pub samples_manifest: Option<PathBuf>,
    /// Add N synthetic documents (no files; content computed on the fly)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub generate_documents: u64,
    /// Add N synthetic samples in 10 generated projects with 20 generated tags
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub generate_samples: u64,
}

/// Hand-written so that `{:?}` never prints the API key.
impl EmulatorArgs {
    /// The demo account: built-in documents on a free loopback port.
    pub fn demo() -> EmulatorArgs {
        EmulatorArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            docs: None,
            manifest: None,
            url_ttl: 3600,
            api_key: DEMO_API_KEY.to_owned(),
            latency_ms: 0,
            bandwidth: None,
            shuffle_seed: None,
            faults: Vec::new(),
            storage_base: None,
            samples: None,
            samples_manifest: None,
            generate_documents: 0,
            generate_samples: 0,
        }
    }
}

impl std::fmt::Debug for EmulatorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorArgs")
            .field("listen", &self.listen)
            .field("docs", &self.docs)
            .field("manifest", &self.manifest)
            .field("url_ttl", &self.url_ttl)
            .field("api_key", &"<redacted>")
            .field("latency_ms", &self.latency_ms)
            .field("bandwidth", &self.bandwidth)
            .field("shuffle_seed", &self.shuffle_seed)
            .field("faults", &self.faults)
            .field("storage_base", &self.storage_base)
            .field("samples", &self.samples)
            .field("samples_manifest", &self.samples_manifest)
            .field("generate_documents", &self.generate_documents)
            .field("generate_samples", &self.generate_samples)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read documents directory {}: {source}", path.display())]
    Docs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read samples directory {}: {source}", path.display())]
    Samples {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad manifest: {0}")]
    Manifest(String),
    #[error("bad fault spec {spec:?}: {message}")]
    Fault { spec: String, message: String },
    #[error("bad arguments: {0}")]
    Args(String),
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
}

/// Everything the handlers share.
pub(crate) struct Shared {
    store: store::Store,
    stats: stats::Counters,
    faults: faults::Faults,
    signer: storage::Signer,
    api_key: String,
    url_ttl: u64,
    latency: Duration,
    bandwidth: Option<u64>,
    base_url: String,
    /// `--storage-base`, without a trailing slash.
    storage_base: Option<String>,
}

/// A running emulator.
pub struct Emulator {
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Emulator {
    /// Loads the documents, binds, spawns the server task and returns once listening.
    pub async fn start(args: EmulatorArgs) -> Result<Emulator, EmulatorError> {
        if args.bandwidth == Some(0) {
            return Err(EmulatorError::Args("--bandwidth must be at least 1".into()));
        }
        let faults = faults::Faults::default();
        for spec in &args.faults {
            let fault = faults::Fault::parse_cli(spec).map_err(|message| EmulatorError::Fault {
                spec: spec.clone(),
                message,
            })?;
            faults.add(fault);
        }
        let storage_base = match &args.storage_base {
            None => None,
            Some(_) if args.docs.is_none() => {
                return Err(EmulatorError::Args("--storage-base needs --docs".into()));
            }
            Some(b) if b.starts_with("http://") || b.starts_with("https://") => {
                Some(b.trim_end_matches('/').to_owned())
            }
            Some(b) => {
                return Err(EmulatorError::Args(format!(
                    "--storage-base {b:?} is not an http:// or https:// URL"
                )));
            }
        };
        if args.manifest.is_some() && args.docs.is_none() {
            return Err(EmulatorError::Args("--manifest needs --docs".into()));
        }
        let load = args.clone();
        let store = tokio::task::spawn_blocking(move || load_store(&load))
            .await
            .map_err(|e| EmulatorError::Io {
                context: "loading documents and samples",
                source: std::io::Error::other(e),
            })??;

        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: args.listen,
                source,
            })?;
        let mut addr = listener.local_addr().map_err(|source| EmulatorError::Io {
            context: "reading the listening address",
            source,
        })?;
        // A wildcard listen address is not something a client can connect to.
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let base_url = format!("http://{addr}");
        let shared = Arc::new(Shared {
            store,
            stats: stats::Counters::default(),
            faults,
            signer: storage::Signer::new(),
            api_key: args.api_key,
            url_ttl: args.url_ttl,
            latency: Duration::from_millis(args.latency_ms),
            bandwidth: args.bandwidth,
            base_url: base_url.clone(),
            storage_base,
        });
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = axum::serve(
            net::Listener(listener),
            app.into_make_service_with_connect_info::<net::ConnInfo>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move { server.await });
        tracing::info!(
            url = %base_url,
            documents = shared.store.count(store::Kind::Document),
            samples = shared.store.count(store::Kind::Sample),
            "emulator listening"
        );
        Ok(Emulator {
            base_url,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The same data as `GET /_emulator/stats`.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// Graceful stop: in-flight responses get a few seconds to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Documents, samples, projects and tags from the arguments (blocking: scans
/// directories). The built-in demo account is used when no source is given.
fn load_store(args: &EmulatorArgs) -> Result<store::Store, EmulatorError> {
    let demo = args.docs.is_none()
        && args.samples.is_none()
        && args.samples_manifest.is_none()
        && args.generate_documents == 0
        && args.generate_samples == 0;
    if demo {
        let (samples, projects, tags) = demo::samples();
        return store::Store::new(
            demo::documents(),
            samples,
            projects,
            tags,
            args.shuffle_seed,
        );
    }
    let mut docs = match &args.docs {
        Some(dir) => store::load_dir(dir, args.manifest.as_deref())?,
        None => Vec::new(),
    };
    let set = store::load_samples(args.samples.as_deref(), args.samples_manifest.as_deref())?;
    let (mut samples, mut projects, mut tags) = (set.samples, set.projects, set.tags);
    if args.generate_documents > 0 {
        docs.extend(generate::documents(args.generate_documents));
    }
    if args.generate_samples > 0 {
        let (p, t) = generate::projects_and_tags();
        samples.extend(generate::samples(args.generate_samples, &p, &t));
        projects.extend(p);
        tags.extend(t);
    }
    if let (Some(_), Some(dir)) = (&args.storage_base, &args.docs) {
        let root = dir.canonicalize().map_err(|source| EmulatorError::Docs {
            path: dir.clone(),
            source,
        })?;
        store::assign_storage_keys(&mut docs, &root);
        store::assign_storage_keys(&mut samples, &root);
    }
    store::Store::new(docs, samples, projects, tags, args.shuffle_seed)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(storage::routes())
        .merge(control::routes())
        .fallback(|| async { api::error(axum::http::StatusCode::NOT_FOUND, "Not found", None) })
        .with_state(shared)
}

/// CLI entry: prints the base URL alone on the first line of stdout (flushed),
/// then one line per document (`id<TAB>size<TAB>filename`), and serves until
/// SIGINT/SIGTERM. Only the first line must reach the reader: the others are
/// written from a separate thread that ignores errors, so a reader that closes
/// stdout (`| head -1`) or stops reading never stops or blocks the emulator.
pub async fn run(args: EmulatorArgs) -> Result<(), EmulatorError> {
    let emulator = Emulator::start(args).await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| EmulatorError::Io {
            context: "installing the SIGTERM handler",
            source,
        })?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", emulator.base_url())
            .and_then(|()| out.flush())
            .map_err(|source| EmulatorError::Io {
                context: "writing to stdout",
                source,
            })?;
    }
    let docs = emulator.shared.store.listing(store::Kind::Document);
    std::thread::spawn(move || {
        let mut lines = String::new();
        for d in docs {
            // Control characters escaped: one line per document whatever the name.
            let name: String = d
                .filename
                .chars()
                .map(|c| match c.is_control() {
                    true => c.escape_default().to_string(),
                    false => c.to_string(),
                })
                .collect();
            lines.push_str(&format!("{}\t{}\t{name}\n", d.id, d.size));
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines.as_bytes()).and_then(|()| out.flush());
    });

    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    emulator.shutdown().await;
    Ok(())
}
