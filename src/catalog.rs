//! The directory tree: One Codex objects as named files, with inode numbers
//! that stay the same across listing refreshes for as long as the mount
//! lives.
//!
//! ```text
//! documents/<name>                     every document
//! documents/.by-id/<id>                the same files, by One Codex id
//! samples/<name>                       every available sample
//! samples/.by-id/<id>
//! samples/by-project/<project>/<name>
//! samples/by-tag/<tag>/<name>
//! ```
//! A file reached through several paths is one inode (like a hard link),
//! so it is downloaded, cached and POSTed for once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, FixedOffset};

use crate::api::model::{Reference, last_segment};
use crate::api::{Listing, ObjectId, ObjectKind, is_valid_id};
use crate::names::{self, Named};

pub const ROOT_INO: u64 = 1;
pub const DOCUMENTS_DIR: &str = "documents";
pub const SAMPLES_DIR: &str = "samples";
pub const BY_ID_DIR: &str = ".by-id";
pub const BY_PROJECT_DIR: &str = "by-project";
pub const BY_TAG_DIR: &str = "by-tag";

/// What the filesystem knows of one downloadable object.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub object: ObjectId,
    /// `None` when the API does not know the size: it is learned from
    /// storage when the file is opened.
    pub size: Option<u64>,
    pub created: SystemTime,
    /// How many directory entries lead to this file.
    pub links: u32,
    /// Extended attributes (`user.onecodex.*`), from the listing.
    pub xattrs: Vec<(String, String)>,
}

#[derive(Debug, Default, Clone)]
pub struct Dir {
    pub parent: u64,
    /// Sorted, so `readdir` offsets are stable between calls.
    pub entries: BTreeMap<String, u64>,
}

pub enum Node<'a> {
    Dir(&'a Dir),
    File(&'a Arc<FileInfo>),
}

#[derive(Debug)]
pub struct Catalog {
    next_ino: u64,
    object_inos: HashMap<ObjectId, u64>,
    /// Directory inodes by path, so that they survive refreshes.
    dir_inos: HashMap<String, u64>,
    dirs: HashMap<u64, Dir>,
    files: HashMap<u64, Arc<FileInfo>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
}

/// One object of the listing, ready to be named and placed.
struct Item<'a> {
    id: &'a str,
    raw_name: &'a str,
    info: FileInfo,
    /// (project directory name, tag directory names) for samples.
    project: Option<String>,
    tags: Vec<String>,
}

impl Catalog {
    pub fn new() -> Catalog {
        let mut c = Catalog {
            next_ino: ROOT_INO + 1,
            object_inos: HashMap::new(),
            dir_inos: HashMap::new(),
            dirs: HashMap::new(),
            files: HashMap::new(),
        };
        c.rebuild(&Listing::default());
        c
    }

    fn alloc(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// Add (or find) the directory `parent_path/name`.
    fn dir(&mut self, parent_path: &str, name: &str) -> (String, u64) {
        let parent = if parent_path.is_empty() {
            ROOT_INO
        } else {
            self.dir_inos[parent_path]
        };
        let path = if parent_path.is_empty() {
            name.to_owned()
        } else {
            format!("{parent_path}/{name}")
        };
        let ino = match self.dir_inos.get(&path) {
            Some(&ino) => ino,
            None => {
                let ino = self.alloc();
                self.dir_inos.insert(path.clone(), ino);
                ino
            }
        };
        self.dirs.entry(ino).or_insert_with(|| Dir {
            parent,
            entries: BTreeMap::new(),
        });
        self.dirs
            .get_mut(&parent)
            .expect("parent exists")
            .entries
            .insert(name.to_owned(), ino);
        (path, ino)
    }

    fn object_ino(&mut self, object: &ObjectId) -> u64 {
        if let Some(&ino) = self.object_inos.get(object) {
            return ino;
        }
        let ino = self.alloc();
        self.object_inos.insert(object.clone(), ino);
        ino
    }

    /// Rebuild the tree from a fresh listing. Objects and directories keep
    /// their inodes; objects gone upstream leave the tree (open handles keep
    /// their own reference). Returns how many entries were skipped as
    /// invalid or duplicate.
    pub fn rebuild(&mut self, listing: &Listing) -> usize {
        self.dirs.clear();
        self.files.clear();
        self.dirs.insert(
            ROOT_INO,
            Dir {
                parent: ROOT_INO,
                entries: BTreeMap::new(),
            },
        );
        let mut skipped = 0;

        let docs: Vec<Item> = listing
            .documents
            .iter()
            .map(|d| Item {
                id: d.id(),
                raw_name: d.filename.as_deref().unwrap_or(""),
                info: FileInfo {
                    object: ObjectId {
                        kind: ObjectKind::Document,
                        id: d.id().to_owned(),
                    },
                    size: d.size,
                    created: d.created_at.into(),
                    links: 0,
                    xattrs: xattrs(&[
                        ("id", Some(d.id().to_owned())),
                        ("uri", Some(d.uri.clone())),
                        ("filename", d.filename.clone()),
                        ("created_at", Some(rfc3339(&d.created_at))),
                        ("uploader", d.uploader.as_ref().map(|r| r.uri().to_owned())),
                        ("description", d.description.clone()),
                    ]),
                },
                project: None,
                tags: Vec::new(),
            })
            .collect();
        skipped += self.place(DOCUMENTS_DIR, ObjectKind::Document, docs, &[BY_ID_DIR]);

        let project_dirs = labels(listing.projects.iter().map(|p| {
            (
                p.uri.as_str(),
                p.project_name.as_deref().or(p.name.as_deref()),
            )
        }));
        let tag_dirs = labels(
            listing
                .tags
                .iter()
                .map(|t| (t.uri.as_str(), t.name.as_deref())),
        );
        let label = |map: &HashMap<&str, String>, r: &Reference| {
            map.get(r.uri())
                .cloned()
                .unwrap_or_else(|| names::sanitize(last_segment(r.uri())))
        };
        let tag_names: HashMap<&str, &str> = listing
            .tags
            .iter()
            .filter_map(|t| Some((t.uri.as_str(), t.name.as_deref()?)))
            .collect();
        let samples: Vec<Item> = listing
            .samples
            .iter()
            .filter(|s| {
                let ok = s.is_available();
                if !ok {
                    tracing::debug!(id = s.id(), status = ?s.status, "sample not available: not listed");
                }
                ok
            })
            .map(|s| Item {
                id: s.id(),
                raw_name: s.filename.as_deref().unwrap_or(""),
                info: FileInfo {
                    object: ObjectId { kind: ObjectKind::Sample, id: s.id().to_owned() },
                    size: s.size,
                    created: s.created_at.into(),
                    links: 0,
                    xattrs: xattrs(&[
                        ("id", Some(s.id().to_owned())),
                        ("uri", Some(s.uri.clone())),
                        ("filename", s.filename.clone()),
                        ("created_at", Some(rfc3339(&s.created_at))),
                        ("owner", s.owner.as_ref().map(|r| r.uri().to_owned())),
                        ("project", s.project.as_ref().map(|r| r.uri().to_owned())),
                        ("project_name", s.project.as_ref().map(|r| label(&project_dirs, r))),
                        (
                            "tags",
                            Some(
                                s.tags
                                    .iter()
                                    .map(|t| tag_names.get(t.uri()).copied().unwrap_or(last_segment(t.uri())))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            ),
                        ),
                        ("status", s.status.clone()),
                        ("visibility", s.visibility.clone()),
                    ]),
                },
                project: s.project.as_ref().map(|r| label(&project_dirs, r)),
                tags: s.tags.iter().map(|r| label(&tag_dirs, r)).collect(),
            })
            .collect();
        skipped += self.place(
            SAMPLES_DIR,
            ObjectKind::Sample,
            samples,
            &[BY_ID_DIR, BY_PROJECT_DIR, BY_TAG_DIR],
        );
        skipped
    }

    /// Name the items and put them in `top`, its `.by-id`, and for samples
    /// the project and tag views.
    fn place(&mut self, top: &str, kind: ObjectKind, items: Vec<Item>, reserved: &[&str]) -> usize {
        let collection = match kind {
            ObjectKind::Document => "/api/v1/documents/",
            ObjectKind::Sample => "/api/v1/samples/",
        };
        let mut seen = HashSet::new();
        let total = items.len();
        let items: Vec<Item> = items
            .into_iter()
            .filter(|it| {
                let uri_ok = it.info.xattrs.iter().any(|(k, v)| {
                    k == "user.onecodex.uri" && v.strip_prefix(collection) == Some(it.id)
                });
                if !is_valid_id(it.id) || !uri_ok {
                    tracing::warn!(id = it.id, "skipping an object with an invalid id or $uri");
                    false
                } else if !seen.insert(it.id) {
                    tracing::warn!(
                        id = it.id,
                        "the listing holds this object twice; keeping the first"
                    );
                    false
                } else {
                    true
                }
            })
            .collect();
        let skipped = total - items.len();
        let named: Vec<Named> = items
            .iter()
            .map(|it| Named {
                id: it.id,
                raw: it.raw_name,
            })
            .collect();
        let file_names = names::assign(&named, reserved);

        let (top_path, top_ino) = self.dir("", top);
        let (_, by_id_ino) = self.dir(&top_path, BY_ID_DIR);
        let mut links: HashMap<u64, u32> = HashMap::new();
        let mut link = |catalog: &mut Catalog, dir: u64, name: &str, ino: u64| {
            catalog
                .dirs
                .get_mut(&dir)
                .expect("dir exists")
                .entries
                .insert(name.to_owned(), ino);
            *links.entry(ino).or_default() += 1;
        };
        let mut placed = Vec::with_capacity(items.len());
        for (item, name) in items.into_iter().zip(file_names) {
            let ino = self.object_ino(&item.info.object);
            link(self, top_ino, &name, ino);
            link(self, by_id_ino, item.id, ino);
            if kind == ObjectKind::Sample {
                if let Some(project) = &item.project {
                    let (p, _) = self.dir(&top_path, BY_PROJECT_DIR);
                    let (_, dir) = self.dir(&p, project);
                    link(self, dir, &name, ino);
                }
                for tag in &item.tags {
                    let (p, _) = self.dir(&top_path, BY_TAG_DIR);
                    let (_, dir) = self.dir(&p, tag);
                    link(self, dir, &name, ino);
                }
            }
            placed.push((ino, item.info));
        }
        if kind == ObjectKind::Sample {
            // The views exist even when empty, so scripts can rely on them.
            self.dir(&top_path, BY_PROJECT_DIR);
            self.dir(&top_path, BY_TAG_DIR);
        }
        for (ino, mut info) in placed {
            info.links = links[&ino];
            self.files.insert(ino, Arc::new(info));
        }
        skipped
    }

    pub fn node(&self, ino: u64) -> Option<Node<'_>> {
        if let Some(d) = self.dirs.get(&ino) {
            return Some(Node::Dir(d));
        }
        self.files.get(&ino).map(Node::File)
    }

    pub fn file(&self, ino: u64) -> Option<&Arc<FileInfo>> {
        self.files.get(&ino)
    }

    pub fn lookup(&self, parent: u64, name: &str) -> Option<u64> {
        let dir = self.dirs.get(&parent)?;
        match name {
            "." => Some(parent),
            ".." => Some(dir.parent),
            _ => dir.entries.get(name).copied(),
        }
    }

    /// Number of objects of each kind, for messages.
    pub fn counts(&self) -> (usize, usize) {
        let docs = self
            .files
            .values()
            .filter(|f| f.object.kind == ObjectKind::Document)
            .count();
        (docs, self.files.len() - docs)
    }
}

/// Safe, unique directory names for projects or tags: `(uri, label)`
/// pairs to uri -> name; a missing label falls back to the id.
fn labels<'a>(items: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> HashMap<&'a str, String> {
    let items: Vec<(&str, &str, &str)> = items
        .map(|(uri, label)| (uri, last_segment(uri), label.unwrap_or("")))
        .collect();
    let named: Vec<Named> = items.iter().map(|(_, id, raw)| Named { id, raw }).collect();
    let assigned = names::assign(&named, &[]);
    items
        .iter()
        .zip(assigned)
        .map(|((uri, _, _), name)| (*uri, name))
        .collect()
}

fn rfc3339(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339()
}

fn xattrs(pairs: &[(&str, Option<String>)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter_map(|(k, v)| Some((format!("user.onecodex.{k}"), v.clone()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::model::{Document, Project, Sample, Tag};

    fn doc(id: &str, name: &str, size: Option<u64>) -> Document {
        serde_json::from_value(serde_json::json!({
            "$uri": format!("/api/v1/documents/{id}"),
            "created_at": "2020-01-02T03:04:05+00:00",
            "filename": name, "size": size,
        }))
        .unwrap()
    }

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!(
            "{}/../shared/reference/onecodex-api-v1/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn listing(documents: Vec<Document>) -> Listing {
        Listing {
            documents,
            ..Listing::default()
        }
    }

    fn path(c: &Catalog, p: &str) -> Option<u64> {
        p.split('/')
            .try_fold(ROOT_INO, |ino, name| c.lookup(ino, name))
    }

    #[test]
    fn inodes_survive_refreshes_and_vanished_files_leave() {
        let mut c = Catalog::new();
        c.rebuild(&listing(vec![
            doc("aaaa", "a.txt", Some(1)),
            doc("bbbb", "b.txt", None),
        ]));
        let a = path(&c, "documents/a.txt").unwrap();
        let b = path(&c, "documents/b.txt").unwrap();
        let docs_dir = path(&c, "documents").unwrap();
        assert_eq!(c.file(b).unwrap().size, None);
        assert_eq!(path(&c, "documents/.by-id/aaaa"), Some(a));
        assert_eq!(c.file(a).unwrap().links, 2);
        c.rebuild(&listing(vec![
            doc("cccc", "c.txt", Some(3)),
            doc("aaaa", "a.txt", Some(1)),
        ]));
        assert_eq!(path(&c, "documents/a.txt"), Some(a));
        assert_eq!(path(&c, "documents"), Some(docs_dir));
        assert_eq!(path(&c, "documents/b.txt"), None);
        assert!(c.file(b).is_none());
        assert_eq!(c.lookup(docs_dir, ".."), Some(ROOT_INO));
    }

    #[test]
    fn real_listing_gets_unique_names_and_skips_bad_entries() {
        let mut docs: Vec<Document> = fixture("documents.json");
        let n = docs.len();
        docs.push(docs[0].clone());
        docs.push(doc("bad id!", "evil", Some(1)));
        let mut wrong_uri = doc("abcd", "x", Some(1));
        wrong_uri.uri = "/api/v1/documents/../../abcd".into();
        docs.push(wrong_uri);
        let mut c = Catalog::new();
        assert_eq!(c.rebuild(&listing(docs)), 3);
        let dir = &c.dirs[&path(&c, "documents").unwrap()];
        assert_eq!(dir.entries.len(), n + 1, "the documents and .by-id");
        assert!(dir.entries.contains_key("Röö's report.pdf"));
        let f = c
            .file(path(&c, "documents/andy's report.pdf").unwrap())
            .unwrap();
        let x: HashMap<_, _> = f.xattrs.iter().cloned().collect();
        assert_eq!(x["user.onecodex.id"], "1a9cb99039ea4b74");
        assert_eq!(x["user.onecodex.uri"], "/api/v1/documents/1a9cb99039ea4b74");
        assert_eq!(
            x["user.onecodex.uploader"],
            "/api/v1/users/4ada56103d9a48b8"
        );
        assert_eq!(
            x["user.onecodex.created_at"],
            "2019-02-08T17:42:28.209949-08:00"
        );
    }

    #[test]
    fn samples_appear_flat_by_id_by_project_and_by_tag_as_one_inode() {
        let samples: Vec<Sample> = fixture("samples.json");
        let tags: Vec<Tag> = fixture("tags.json");
        let mut with_project = samples[3].clone();
        with_project.uri = "/api/v1/samples/00000000aaaaaaaa".into();
        with_project.filename = Some("gut.fastq.gz".into());
        with_project.project = Some(Reference::Ref {
            uri: "/api/v1/projects/p1".into(),
        });
        let mut pending = samples[3].clone();
        pending.uri = "/api/v1/samples/00000000bbbbbbbb".into();
        pending.status = Some("importing".into());
        let projects: Vec<Project> = serde_json::from_value(serde_json::json!([
            {"$uri": "/api/v1/projects/p1", "name": "Gut study", "project_name": null}
        ]))
        .unwrap();
        let mut all = samples.clone();
        all.push(with_project);
        all.push(pending);
        let mut c = Catalog::new();
        c.rebuild(&Listing {
            documents: vec![],
            samples: all,
            projects,
            tags,
        });
        let flat = path(&c, "samples/SRR2352185.fastq.gz").unwrap();
        assert_eq!(path(&c, "samples/.by-id/7428cca4a3a04a8e"), Some(flat));
        assert_eq!(
            path(&c, "samples/by-tag/environmental/SRR2352185.fastq.gz"),
            Some(flat)
        );
        assert_eq!(
            path(&c, "samples/by-tag/S. enterica/SRR2352185.fastq.gz"),
            Some(flat)
        );
        let gut = path(&c, "samples/gut.fastq.gz").unwrap();
        assert_eq!(
            path(&c, "samples/by-project/Gut study/gut.fastq.gz"),
            Some(gut)
        );
        assert_eq!(
            c.file(flat).unwrap().links,
            5,
            "flat, .by-id and three tags"
        );
        assert_eq!(
            path(&c, "samples/.by-id/00000000bbbbbbbb"),
            None,
            "not available: not listed"
        );
        let x: HashMap<_, _> = c.file(flat).unwrap().xattrs.iter().cloned().collect();
        assert_eq!(x["user.onecodex.status"], "available");
        assert_eq!(x["user.onecodex.visibility"], "private");
        assert_eq!(
            x["user.onecodex.tags"],
            "environmental, isolate, S. enterica"
        );
        assert_eq!(x["user.onecodex.owner"], "/api/v1/users/4ada56103d9a48b8");
        let x: HashMap<_, _> = c.file(gut).unwrap().xattrs.iter().cloned().collect();
        assert_eq!(x["user.onecodex.project_name"], "Gut study");
        assert_eq!(c.counts(), (0, samples.len() + 1));
    }
}
