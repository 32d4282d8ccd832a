//! The object set the emulator serves (documents, samples, projects, tags):
//! what `--docs`/`--samples` and the manifests make of it, its listing order,
//! runtime changes, versions (generation/ETag), positioned reads.

use std::collections::HashMap;
use std::fs::File;
use std::hash::Hasher;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use fnv::FnvHasher;
use serde::Deserialize;

use super::EmulatorError;
use super::synthetic::{Procedural, SyntheticFastq, splitmix64};
use super::terms::Terms;

/// Where a document's bytes come from.
pub(crate) enum Source {
    /// A file on disk, read at request time.
    File(PathBuf),
    /// Small generated content kept in memory.
    Memory(Bytes),
    /// Procedural FASTQ computed by offset (costs no memory).
    Fastq(SyntheticFastq),
    /// Procedural bytes computed by offset (generated accounts).
    Generated(Procedural),
}

/// What makes a sample a sample (documents have none).
#[derive(Clone, Debug)]
pub(crate) struct SampleInfo {
    pub status: String,
    pub visibility: String,
    /// Project id.
    pub project: Option<String>,
    /// Tag ids.
    pub tags: Vec<String>,
    /// The listing shows `"filename": null`.
    pub null_filename: bool,
}

impl SampleInfo {
    pub fn new() -> SampleInfo {
        SampleInfo {
            status: "available".into(),
            visibility: "private".into(),
            project: None,
            tags: Vec::new(),
            null_filename: false,
        }
    }
}

pub(crate) struct Project {
    pub id: String,
    pub name: Option<String>,
    pub project_name: Option<String>,
}

pub(crate) struct Tag {
    pub id: String,
    pub name: String,
}

/// Documents or samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Document,
    Sample,
}

pub(crate) struct Document {
    pub id: String,
    pub filename: String,
    pub size: u64,
    /// The listing shows `"size": null`.
    pub null_size: bool,
    pub created_at: String,
    /// Listing position: ascending along the listing, never reused (cursors).
    pub seq: u64,
    /// Set for samples.
    pub sample: Option<SampleInfo>,
    /// The file's path under a scanned root (for `--storage-base`).
    pub disk_path: Option<PathBuf>,
    /// Percent-encoded path relative to `--docs` (for `--storage-base`).
    pub storage_key: Option<String>,
    /// Remaining downloads, validity and POST delay (documents).
    pub terms: Terms,
    source: Source,
    etag_seed: u64,
    state: Mutex<DocState>,
}

struct DocState {
    generation: u64,
    last_modified: SystemTime,
}

/// The document's content version a response is built from.
#[derive(Clone, Debug)]
pub(crate) struct Version {
    pub generation: u64,
    /// Quoted, as sent in the `ETag` header.
    pub etag: String,
    pub last_modified: SystemTime,
}

impl Version {
    /// Byte XORed into the original content for this generation: 0 for the
    /// original, then 1..=255 cycling, so consecutive generations always differ.
    pub fn xor_key(&self) -> u8 {
        match self.generation {
            0 => 0,
            g => ((g - 1) % 255 + 1) as u8,
        }
    }
}

impl Document {
    pub fn new(
        id: String,
        filename: String,
        size: u64,
        mtime: SystemTime,
        source: Source,
        etag_seed: u64,
    ) -> Document {
        Document {
            id,
            filename,
            size,
            null_size: false,
            created_at: format_created_at(mtime),
            seq: 0,
            sample: None,
            disk_path: None,
            storage_key: None,
            terms: Terms::default(),
            source,
            etag_seed,
            state: Mutex::new(DocState {
                generation: 0,
                last_modified: mtime,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, DocState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn version_of(&self, st: &DocState) -> Version {
        let mut h = FnvHasher::default();
        h.write(&self.etag_seed.to_le_bytes());
        h.write(&st.generation.to_le_bytes());
        let a = h.finish();
        h.write(b"/etag");
        Version {
            generation: st.generation,
            etag: format!("\"{a:016x}{:016x}\"", h.finish()),
            last_modified: st.last_modified,
        }
    }

    pub fn version(&self) -> Version {
        self.version_of(&self.state())
    }

    /// The content changes (same size): generation + 1, new ETag.
    pub fn change(&self) -> Version {
        let mut st = self.state();
        st.generation += 1;
        st.last_modified = SystemTime::now();
        self.version_of(&st)
    }

    /// Opens the content for positioned reads (blocking: call off the runtime).
    pub fn open(&self) -> io::Result<Reader> {
        Ok(match &self.source {
            Source::File(p) => Reader::File(Arc::new(File::open(p)?)),
            Source::Memory(b) => Reader::Memory(b.clone()),
            Source::Fastq(f) => Reader::Fastq(*f),
            Source::Generated(g) => Reader::Generated(*g),
        })
    }

    pub fn kind(&self) -> Kind {
        match self.sample {
            Some(_) => Kind::Sample,
            None => Kind::Document,
        }
    }

    /// A sample whose content can be downloaded (documents always can).
    pub fn available(&self) -> bool {
        self.sample.as_ref().is_none_or(|s| s.status == "available")
    }
}

/// An open document content, cheap to clone into blocking tasks.
#[derive(Clone)]
pub(crate) enum Reader {
    File(Arc<File>),
    Memory(Bytes),
    Fastq(SyntheticFastq),
    Generated(Procedural),
}

impl Reader {
    /// Reads exactly `len` bytes at `offset`, XORed with `xor` (blocking).
    pub fn read_at(&self, offset: u64, len: usize, xor: u8) -> io::Result<Bytes> {
        let mut buf = match self {
            Reader::Memory(b) => {
                let end = offset as usize + len;
                if end > b.len() {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let slice = b.slice(offset as usize..end);
                if xor == 0 {
                    return Ok(slice);
                }
                slice.to_vec()
            }
            Reader::File(f) => {
                let mut buf = vec![0; len];
                // A file that shrank since start-up fails here: the response is aborted.
                f.read_exact_at(&mut buf, offset)?;
                buf
            }
            Reader::Fastq(g) => g.read(offset, len),
            Reader::Generated(g) => g.read(offset, len),
        };
        if xor != 0 {
            buf.iter_mut().for_each(|b| *b ^= xor);
        }
        Ok(Bytes::from(buf))
    }
}

/// RFC 3339 with offset and microseconds, like the real API.
pub(crate) fn format_created_at(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

/// FNV-1a 64: stable across runs and platforms (ids must survive restarts).
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = FnvHasher::default();
    h.write(bytes);
    h.finish()
}

/// A 16-hex id from `key`, separated by `domain` from plain FNV ids (document
/// ids from `--docs` are `fnv1a64(relative path)`), so kinds never share ids.
pub(crate) fn domain_id(domain: u64, key: &[u8]) -> String {
    let mut state = fnv1a64(key) ^ domain.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{:016x}", splitmix64(&mut state))
}

/// Id domains (see `domain_id`).
pub(crate) mod domain {
    pub const SAMPLE_FILE: u64 = 1;
    pub const GENERATED_DOCUMENT: u64 = 2;
    pub const GENERATED_SAMPLE: u64 = 3;
    pub const MANIFEST_SAMPLE: u64 = 4;
    pub const DEMO_SAMPLE: u64 = 5;
    pub const PROJECT: u64 = 6;
    pub const TAG: u64 = 7;
    pub const ADDED_DOCUMENT: u64 = 8;
    pub const METADATA: u64 = 9;
    pub const CLASSIFICATION: u64 = 10;
}

/// One kind's objects in listing order (ascending `seq`).
#[derive(Default)]
struct Collection {
    listing: Vec<Arc<Document>>,
}

struct Inner {
    docs: Collection,
    samples: Collection,
    /// Every object by id (ids are unique across kinds).
    by_id: HashMap<String, Arc<Document>>,
    next_seq: u64,
    added: u64,
}

impl Inner {
    fn collection(&self, kind: Kind) -> &Collection {
        match kind {
            Kind::Document => &self.docs,
            Kind::Sample => &self.samples,
        }
    }
}

/// One page of a listing.
pub(crate) struct Slice {
    pub items: Vec<Arc<Document>>,
    /// Objects in the whole listing.
    pub total: usize,
    /// For cursor pagination: the `seq` the next page starts at.
    pub next_seq: Option<u64>,
}

/// All objects, their listing orders and indexes; projects and tags.
pub(crate) struct Store {
    inner: RwLock<Inner>,
    projects: Vec<Project>,
    tags: Vec<Tag>,
}

fn order(mut objs: Vec<Document>, shuffle_seed: Option<u64>) -> Vec<Document> {
    // Unparseable (manifest-provided) dates sort first.
    objs.sort_by_cached_key(|d| {
        let t = DateTime::parse_from_rfc3339(&d.created_at).ok();
        (t.map(|t| t.timestamp_micros()), d.id.clone())
    });
    if let Some(seed) = shuffle_seed {
        let mut state = seed;
        for i in (1..objs.len()).rev() {
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            objs.swap(i, j);
        }
    }
    objs
}

impl Store {
    /// Each kind sorted by `created_at` then id, or in the seeded permutation.
    pub fn new(
        docs: Vec<Document>,
        samples: Vec<Document>,
        projects: Vec<Project>,
        tags: Vec<Tag>,
        shuffle_seed: Option<u64>,
    ) -> Result<Store, EmulatorError> {
        let mut inner = Inner {
            docs: Collection::default(),
            samples: Collection::default(),
            by_id: HashMap::with_capacity(docs.len() + samples.len()),
            next_seq: 0,
            added: 0,
        };
        let samples_seed = shuffle_seed.map(|s| s ^ 0x5a3b_1e55_0000_0001);
        for (objs, seed, kind) in [
            (docs, shuffle_seed, Kind::Document),
            (samples, samples_seed, Kind::Sample),
        ] {
            for mut d in order(objs, seed) {
                d.seq = inner.next_seq;
                inner.next_seq += 1;
                let d = Arc::new(d);
                if inner.by_id.insert(d.id.clone(), d.clone()).is_some() {
                    return Err(EmulatorError::Manifest(format!(
                        "two documents or samples have the id {:?}",
                        d.id
                    )));
                }
                match kind {
                    Kind::Document => inner.docs.listing.push(d),
                    Kind::Sample => inner.samples.listing.push(d),
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for id in projects.iter().map(|p| &p.id) {
            if !seen.insert(("p", id.clone())) {
                return Err(EmulatorError::Manifest(format!(
                    "two projects have the id {id:?}"
                )));
            }
        }
        for id in tags.iter().map(|t| &t.id) {
            if !seen.insert(("t", id.clone())) {
                return Err(EmulatorError::Manifest(format!(
                    "two tags have the id {id:?}"
                )));
            }
        }
        Ok(Store {
            inner: RwLock::new(inner),
            projects,
            tags,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Any object, document or sample (storage and control routes).
    pub fn get(&self, id: &str) -> Option<Arc<Document>> {
        self.read().by_id.get(id).cloned()
    }

    /// An object of one kind.
    pub fn get_kind(&self, kind: Kind, id: &str) -> Option<Arc<Document>> {
        self.get(id).filter(|d| d.kind() == kind)
    }

    /// A snapshot of one kind's listing.
    pub fn listing(&self, kind: Kind) -> Vec<Arc<Document>> {
        self.read().collection(kind).listing.clone()
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.read().collection(kind).listing.len()
    }

    /// Objects `start..end` (clamped) of a listing.
    pub fn range(&self, kind: Kind, start: usize, end: usize) -> Slice {
        let g = self.read();
        let l = &g.collection(kind).listing;
        let end = end.min(l.len());
        Slice {
            items: l[start.min(end)..end].to_vec(),
            total: l.len(),
            next_seq: None,
        }
    }

    /// Up to `n` objects from the first whose `seq` is at least `from`.
    pub fn after(&self, kind: Kind, from: u64, n: usize) -> Slice {
        let g = self.read();
        let l = &g.collection(kind).listing;
        let start = l.partition_point(|d| d.seq < from);
        let end = start.saturating_add(n).min(l.len());
        Slice {
            items: l[start..end].to_vec(),
            total: l.len(),
            next_seq: l.get(end).map(|d| d.seq),
        }
    }

    pub fn projects(&self) -> &[Project] {
        &self.projects
    }

    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// Adds an in-memory document at the end of the listing; returns its id.
    pub fn add_document(&self, filename: String, content: Bytes) -> String {
        let now = SystemTime::now();
        let mut g = self.write();
        let id = loop {
            g.added += 1;
            let nanos = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let key = format!("{}/{nanos}/{filename}", g.added);
            let id = domain_id(domain::ADDED_DOCUMENT, key.as_bytes());
            if !g.by_id.contains_key(&id) {
                break id;
            }
        };
        let mut seed = FnvHasher::default();
        seed.write(id.as_bytes());
        seed.write(&content);
        let mut d = Document::new(
            id.clone(),
            filename,
            content.len() as u64,
            now,
            Source::Memory(content),
            seed.finish(),
        );
        d.seq = g.next_seq;
        g.next_seq += 1;
        let d = Arc::new(d);
        g.by_id.insert(id.clone(), d.clone());
        g.docs.listing.push(d);
        id
    }

    /// Removes an object of `kind`: gone from listings, gets, POSTs and storage.
    pub fn remove(&self, kind: Kind, id: &str) -> bool {
        let mut g = self.write();
        if g.by_id.get(id).is_none_or(|d| d.kind() != kind) {
            return false;
        }
        g.by_id.remove(id);
        let l = match kind {
            Kind::Document => &mut g.docs.listing,
            Kind::Sample => &mut g.samples.listing,
        };
        l.retain(|d| d.id != id);
        true
    }
}

/// Ids appear in URL paths: keep them URL-safe.
pub(crate) fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "id {id:?} must be 1-64 characters of [A-Za-z0-9_-]"
        ))
    }
}

/// Percent-encodes each `/`-separated segment of a relative path.
pub(crate) fn encode_path(rel: &[u8]) -> String {
    let mut out = String::with_capacity(rel.len());
    for (i, seg) in rel.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        for &b in seg {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// Gives every object stored under `root` its `--storage-base` key.
pub(crate) fn assign_storage_keys(objs: &mut [Document], root: &Path) {
    for d in objs {
        if let Some(rel) = d.disk_path.as_ref().and_then(|p| p.strip_prefix(root).ok()) {
            d.storage_key = Some(encode_path(rel.as_os_str().as_bytes()));
        }
    }
}

/// One entry of the `--manifest` JSON array.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    path: String,
    filename: Option<String>,
    null_size: Option<bool>,
    id: Option<String>,
    created_at: Option<String>,
    downloads_remaining: Option<u64>,
    valid_until: Option<String>,
}

/// One regular file found under a scanned root.
struct Scanned {
    /// Relative to the root.
    rel: Vec<u8>,
    /// The path under the (canonical) root, symlink unresolved.
    path: PathBuf,
    /// What to open (a symlink's target).
    target: PathBuf,
    filename: String,
    size: u64,
    mtime: SystemTime,
}

impl Scanned {
    fn etag_seed(&self) -> u64 {
        let mtime_ns = self
            .mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut seed = FnvHasher::default();
        seed.write(&self.rel);
        seed.write(&self.size.to_le_bytes());
        seed.write(&mtime_ns.to_le_bytes());
        seed.finish()
    }

    fn into_document(self, id: String) -> Document {
        let seed = self.etag_seed();
        let mut d = Document::new(
            id,
            self.filename,
            self.size,
            self.mtime,
            Source::File(self.target),
            seed,
        );
        d.disk_path = Some(self.path);
        d
    }
}

/// Every regular file under `dir` (recursively; symlinks to regular files
/// inside it are followed).
fn scan_dir(
    dir: &Path,
    err: impl Fn(&Path, io::Error) -> EmulatorError,
) -> Result<Vec<Scanned>, EmulatorError> {
    let root = dir.canonicalize().map_err(|e| err(dir, e))?;
    if !root.is_dir() {
        return Err(err(dir, io::Error::other("not a directory")));
    }
    let mut found = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| err(&d, e))? {
            let entry = entry.map_err(|e| err(&d, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| err(&path, e))?;
            let (target, meta) = if ft.is_dir() {
                pending.push(path);
                continue;
            } else if ft.is_symlink() {
                // Follow only links to regular files inside the root: never
                // directories (no loops; real ones are walked anyway) or outside.
                let Ok(t) = path.canonicalize() else { continue };
                match t.metadata() {
                    Ok(m) if m.is_file() && t.starts_with(&root) => (t, m),
                    _ => continue,
                }
            } else if ft.is_file() {
                let m = entry.metadata().map_err(|e| err(&path, e))?;
                (path.clone(), m)
            } else {
                continue;
            };
            let rel = path.strip_prefix(&root).unwrap_or(&path);
            found.push(Scanned {
                rel: rel.as_os_str().as_bytes().to_vec(),
                filename: entry.file_name().to_string_lossy().into_owned(),
                size: meta.len(),
                mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                path,
                target,
            });
        }
    }
    Ok(found)
}

/// Every regular file under `dir` (recursively) as a document, with the
/// manifest's overrides applied.
pub(crate) fn load_dir(
    dir: &Path,
    manifest: Option<&Path>,
) -> Result<Vec<Document>, EmulatorError> {
    let scanned = scan_dir(dir, |path, source| EmulatorError::Docs {
        path: path.to_owned(),
        source,
    })?;
    let mut docs = Vec::with_capacity(scanned.len());
    // Index into `docs` by relative path, for the manifest.
    let mut by_rel: HashMap<Vec<u8>, usize> = HashMap::new();
    for s in scanned {
        by_rel.insert(s.rel.clone(), docs.len());
        let id = format!("{:016x}", fnv1a64(&s.rel));
        docs.push(s.into_document(id));
    }
    if let Some(m) = manifest {
        apply_manifest(m, &mut docs, &by_rel)?;
    }
    Ok(docs)
}

/// The `--samples-manifest` JSON object.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SamplesManifest {
    #[serde(default)]
    projects: Vec<ProjectEntry>,
    #[serde(default)]
    tags: Vec<TagEntry>,
    #[serde(default)]
    samples: Vec<SampleEntry>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct ProjectEntry {
    id: Option<String>,
    name: Option<String>,
    project_name: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct TagEntry {
    id: Option<String>,
    name: String,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct SampleEntry {
    path: Option<String>,
    filename: Option<String>,
    status: Option<String>,
    visibility: Option<String>,
    project: Option<String>,
    tags: Option<Vec<String>>,
    null_size: Option<bool>,
    id: Option<String>,
    created_at: Option<String>,
}

pub(crate) const SAMPLE_STATUSES: [&str; 6] = [
    "awaiting_data",
    "importing",
    "validating",
    "failed_validation",
    "available",
    "deleted",
];
const VISIBILITIES: [&str; 5] = ["public", "shared", "private", "importing", "awaiting data"];

/// Samples from `--samples DIR` (every regular file) and `--samples-manifest`.
pub(crate) struct SampleSet {
    pub samples: Vec<Document>,
    pub projects: Vec<Project>,
    pub tags: Vec<Tag>,
}

/// The id of a scanned sample file.
pub(crate) fn sample_file_id(rel: &[u8]) -> String {
    let mut key = b"samples/".to_vec();
    key.extend_from_slice(rel);
    domain_id(domain::SAMPLE_FILE, &key)
}

pub(crate) fn load_samples(
    dir: Option<&Path>,
    manifest: Option<&Path>,
) -> Result<SampleSet, EmulatorError> {
    let mut samples = Vec::new();
    let mut by_rel: HashMap<Vec<u8>, usize> = HashMap::new();
    if let Some(dir) = dir {
        let scanned = scan_dir(dir, |path, source| EmulatorError::Samples {
            path: path.to_owned(),
            source,
        })?;
        for s in scanned {
            by_rel.insert(s.rel.clone(), samples.len());
            let id = sample_file_id(&s.rel);
            let mut d = s.into_document(id);
            d.sample = Some(SampleInfo::new());
            samples.push(d);
        }
    }
    let mut set = SampleSet {
        samples,
        projects: Vec::new(),
        tags: Vec::new(),
    };
    if let Some(m) = manifest {
        apply_samples_manifest(m, &mut set, &by_rel)?;
    }
    Ok(set)
}

fn apply_samples_manifest(
    path: &Path,
    set: &mut SampleSet,
    by_rel: &HashMap<Vec<u8>, usize>,
) -> Result<(), EmulatorError> {
    let bad = |msg: String| EmulatorError::Manifest(format!("{}: {msg}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let m: SamplesManifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    for (i, p) in m.projects.into_iter().enumerate() {
        let id = match p.id {
            Some(id) => {
                check_id(&id).map_err(&bad)?;
                id
            }
            None => {
                let key = format!("{i}/{:?}/{:?}", p.name, p.project_name);
                domain_id(domain::PROJECT, key.as_bytes())
            }
        };
        set.projects.push(Project {
            id,
            name: p.name,
            project_name: p.project_name,
        });
    }
    for t in m.tags {
        let id = match t.id {
            Some(id) => {
                check_id(&id).map_err(&bad)?;
                id
            }
            None => domain_id(domain::TAG, t.name.as_bytes()),
        };
        set.tags.push(Tag { id, name: t.name });
    }
    // A sample names a project or tag by id, or else by name.
    let project_id = |r: &str| -> Result<String, EmulatorError> {
        let p = set.projects.iter().find(|p| p.id == r).or_else(|| {
            set.projects
                .iter()
                .find(|p| p.name.as_deref() == Some(r) || p.project_name.as_deref() == Some(r))
        });
        p.map(|p| p.id.clone())
            .ok_or_else(|| bad(format!("no project {r:?} in \"projects\"")))
    };
    let tag_id = |r: &str| -> Result<String, EmulatorError> {
        let t = set
            .tags
            .iter()
            .find(|t| t.id == r)
            .or_else(|| set.tags.iter().find(|t| t.name == r));
        t.map(|t| t.id.clone())
            .ok_or_else(|| bad(format!("no tag {r:?} in \"tags\"")))
    };
    let mut extra = Vec::new();
    for (n, e) in m.samples.into_iter().enumerate() {
        let doc = match &e.path {
            Some(p) => {
                let rel = p.trim_start_matches("./");
                let Some(&i) = by_rel.get(rel.as_bytes()) else {
                    return Err(bad(format!(
                        "no regular file {p:?} under the samples directory"
                    )));
                };
                &mut set.samples[i]
            }
            None => {
                // No content yet: an upload that has not arrived.
                let id = domain_id(domain::MANIFEST_SAMPLE, format!("{n}").as_bytes());
                let mut d = Document::new(
                    id.clone(),
                    String::new(),
                    0,
                    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
                    Source::Memory(Bytes::new()),
                    fnv1a64(id.as_bytes()),
                );
                d.null_size = true;
                let mut info = SampleInfo::new();
                info.null_filename = e.filename.is_none();
                d.sample = Some(info);
                extra.push(d);
                extra.last_mut().expect("just pushed")
            }
        };
        let info = doc.sample.as_mut().expect("samples carry SampleInfo");
        if let Some(s) = e.status {
            if !SAMPLE_STATUSES.contains(&s.as_str()) {
                return Err(bad(format!(
                    "status {s:?} is not one of {}",
                    SAMPLE_STATUSES.join(", ")
                )));
            }
            info.status = s;
        }
        if let Some(v) = e.visibility {
            if !VISIBILITIES.contains(&v.as_str()) {
                return Err(bad(format!(
                    "visibility {v:?} is not one of {}",
                    VISIBILITIES.join(", ")
                )));
            }
            info.visibility = v;
        }
        if let Some(p) = e.project {
            info.project = Some(project_id(&p)?);
        }
        if let Some(tags) = e.tags {
            info.tags = tags.iter().map(|t| tag_id(t)).collect::<Result<_, _>>()?;
        }
        override_attributes(doc, e.id, e.filename, e.null_size, e.created_at).map_err(&bad)?;
    }
    set.samples.extend(extra);
    Ok(())
}

/// What either manifest may set on an object, whichever kind it is.
fn override_attributes(
    doc: &mut Document,
    id: Option<String>,
    filename: Option<String>,
    null_size: Option<bool>,
    created_at: Option<String>,
) -> Result<(), String> {
    if let Some(id) = id {
        check_id(&id)?;
        doc.id = id;
    }
    if let Some(f) = filename {
        doc.filename = f;
    }
    if let Some(n) = null_size {
        doc.null_size = n;
    }
    if let Some(c) = created_at {
        doc.created_at = c;
    }
    Ok(())
}

fn apply_manifest(
    path: &Path,
    docs: &mut [Document],
    by_rel: &HashMap<Vec<u8>, usize>,
) -> Result<(), EmulatorError> {
    let bad = |msg: String| EmulatorError::Manifest(format!("{}: {msg}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let entries: Vec<ManifestEntry> =
        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    for e in entries {
        let rel = e.path.trim_start_matches("./");
        let Some(&i) = by_rel.get(rel.as_bytes()) else {
            return Err(bad(format!(
                "no regular file {:?} under the docs directory",
                e.path
            )));
        };
        let doc = &mut docs[i];
        override_attributes(doc, e.id, e.filename, e.null_size, e.created_at).map_err(&bad)?;
        doc.terms
            .set(e.downloads_remaining, e.valid_until.as_deref())
            .map_err(&bad)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_ids_are_their_own_hash_of_the_path() {
        let rel = b"run1/s01.fastq.gz";
        let id = sample_file_id(rel);
        assert_eq!(id, sample_file_id(rel), "stable");
        assert_eq!(id.len(), 16);
        assert_ne!(id, format!("{:016x}", fnv1a64(rel)));
        assert_ne!(
            id,
            format!("{:016x}", fnv1a64(b"samples/run1/s01.fastq.gz"))
        );
        assert_ne!(id, sample_file_id(b"run1/s02.fastq.gz"));
    }

    #[test]
    fn fnv_is_the_standard_one() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn xor_key_cycles_without_zero() {
        let key = |generation| {
            Version {
                generation,
                etag: String::new(),
                last_modified: SystemTime::UNIX_EPOCH,
            }
            .xor_key()
        };
        assert_eq!(key(0), 0);
        assert_eq!(key(1), 1);
        assert_eq!(key(255), 255);
        assert_eq!(key(256), 1);
    }

    #[test]
    fn created_at_format() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_549_634_076_768_056);
        assert_eq!(format_created_at(t), "2019-02-08T13:54:36.768056+00:00");
    }
}
