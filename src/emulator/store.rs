//! The document set: scanning `--docs`, applying `--manifest`, listing order,
//! versions (generation/ETag) and positioned reads of content.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::EmulatorError;
use super::demo::SyntheticFastq;

/// Where a document's bytes come from.
pub(crate) enum Source {
    /// A file on disk, read at request time.
    File(PathBuf),
    /// Small generated content kept in memory.
    Memory(Bytes),
    /// Procedural FASTQ computed by offset (costs no memory).
    Fastq(SyntheticFastq),
}

pub(crate) struct Document {
    pub id: String,
    pub filename: String,
    pub size: u64,
    /// The listing shows `"size": null`.
    pub null_size: bool,
    pub created_at: String,
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
        let mut h = Fnv::new();
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
        })
    }
}

/// An open document content, cheap to clone into blocking tasks.
#[derive(Clone)]
pub(crate) enum Reader {
    File(Arc<File>),
    Memory(Bytes),
    Fastq(SyntheticFastq),
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
pub(crate) struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.finish()
}

/// splitmix64: tiny, fast, and stable across crate versions (unlike `StdRng`).
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// All documents, in listing order, plus an index by id.
pub(crate) struct Store {
    listing: Vec<Arc<Document>>,
    by_id: HashMap<String, Arc<Document>>,
}

impl Store {
    /// Sorts by `created_at` then id, or applies the seeded permutation.
    pub fn new(docs: Vec<Document>, shuffle_seed: Option<u64>) -> Result<Store, EmulatorError> {
        let mut listing: Vec<Arc<Document>> = docs.into_iter().map(Arc::new).collect();
        // Unparseable (manifest-provided) dates sort first.
        listing.sort_by_cached_key(|d| {
            let t = DateTime::parse_from_rfc3339(&d.created_at).ok();
            (t.map(|t| t.timestamp_micros()), d.id.clone())
        });
        if let Some(seed) = shuffle_seed {
            let mut state = seed;
            for i in (1..listing.len()).rev() {
                let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
                listing.swap(i, j);
            }
        }
        let mut by_id = HashMap::new();
        for d in &listing {
            if by_id.insert(d.id.clone(), d.clone()).is_some() {
                return Err(EmulatorError::Manifest(format!(
                    "two documents have the id {:?}",
                    d.id
                )));
            }
        }
        Ok(Store { listing, by_id })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Document>> {
        self.by_id.get(id)
    }

    pub fn listing(&self) -> &[Arc<Document>] {
        &self.listing
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
}

/// Every regular file under `dir` (recursively) as a document, with the
/// manifest's overrides applied.
pub(crate) fn load_dir(
    dir: &Path,
    manifest: Option<&Path>,
) -> Result<Vec<Document>, EmulatorError> {
    let docs_err = |path: &Path, source: io::Error| EmulatorError::Docs {
        path: path.to_owned(),
        source,
    };
    let root = dir.canonicalize().map_err(|e| docs_err(dir, e))?;
    if !root.is_dir() {
        return Err(docs_err(dir, io::Error::other("not a directory")));
    }
    let mut docs = Vec::new();
    // Index into `docs` by relative path, for the manifest.
    let mut by_rel: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut pending = vec![root.clone()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| docs_err(&d, e))? {
            let entry = entry.map_err(|e| docs_err(&d, e))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(|e| docs_err(&path, e))?;
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
                let m = entry.metadata().map_err(|e| docs_err(&path, e))?;
                (path.clone(), m)
            } else {
                continue;
            };
            let rel = path.strip_prefix(&root).unwrap_or(&path);
            let rel_bytes = rel.as_os_str().as_bytes().to_vec();
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let mtime_ns = mtime
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let mut seed = Fnv::new();
            seed.write(&rel_bytes);
            seed.write(&meta.len().to_le_bytes());
            seed.write(&mtime_ns.to_le_bytes());
            by_rel.insert(rel_bytes.clone(), docs.len());
            docs.push(Document::new(
                format!("{:016x}", fnv1a64(&rel_bytes)),
                entry.file_name().to_string_lossy().into_owned(),
                meta.len(),
                mtime,
                Source::File(target),
                seed.finish(),
            ));
        }
    }
    if let Some(m) = manifest {
        apply_manifest(m, &mut docs, &by_rel)?;
    }
    Ok(docs)
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
        if let Some(id) = e.id {
            // Ids appear in URL paths: keep them URL-safe.
            let ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(bad(format!(
                    "id {id:?} must be 1-64 characters of [A-Za-z0-9_-]"
                )));
            }
            doc.id = id;
        }
        if let Some(f) = e.filename {
            doc.filename = f;
        }
        if let Some(n) = e.null_size {
            doc.null_size = n;
        }
        if let Some(c) = e.created_at {
            doc.created_at = c;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
