//! The directory tree: One Codex objects as named files with inode numbers
//! that stay the same across listing refreshes for as long as the mount
//! lives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use crate::api::model::Document;
use crate::api::{ObjectId, ObjectKind, is_valid_id};
use crate::names::{self, Named};

pub const ROOT_INO: u64 = 1;
pub const DOCUMENTS_DIR: &str = "documents";

/// What the filesystem knows of one downloadable object.
#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub object: ObjectId,
    /// `None` when the API does not know the size: it is learned from
    /// storage when the file is opened.
    pub size: Option<u64>,
    pub created: SystemTime,
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
    dir_inos: HashMap<String, u64>,
    dirs: HashMap<u64, Dir>,
    files: HashMap<u64, Arc<FileInfo>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self::new()
    }
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
        c.dirs.insert(
            ROOT_INO,
            Dir {
                parent: ROOT_INO,
                entries: BTreeMap::new(),
            },
        );
        c.add_dir(ROOT_INO, DOCUMENTS_DIR);
        c
    }

    fn alloc(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// A directory's inode is tied to its path, so it survives refreshes.
    fn add_dir(&mut self, parent: u64, name: &str) -> u64 {
        let key = format!("{parent}/{name}");
        let ino = match self.dir_inos.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.alloc();
                self.dir_inos.insert(key, ino);
                ino
            }
        };
        self.dirs
            .entry(ino)
            .or_insert_with(|| Dir {
                parent,
                entries: BTreeMap::new(),
            })
            .parent = parent;
        self.dirs
            .get_mut(&parent)
            .expect("parent exists")
            .entries
            .insert(name.to_owned(), ino);
        ino
    }

    fn object_ino(&mut self, object: &ObjectId) -> u64 {
        if let Some(&ino) = self.object_inos.get(object) {
            return ino;
        }
        let ino = self.alloc();
        self.object_inos.insert(object.clone(), ino);
        ino
    }

    pub fn documents_ino(&self) -> u64 {
        self.dirs[&ROOT_INO].entries[DOCUMENTS_DIR]
    }

    /// Replace the documents with a fresh listing. Objects keep their inode;
    /// objects gone upstream leave the tree (open handles keep their own
    /// reference). Returns how many listing entries were skipped as invalid
    /// or duplicate.
    pub fn set_documents(&mut self, docs: &[Document]) -> usize {
        let mut seen = HashSet::new();
        let mut kept: Vec<(&Document, &str)> = Vec::with_capacity(docs.len());
        for doc in docs {
            let id = doc.id();
            if !is_valid_id(id) || doc.uri.strip_prefix("/api/v1/documents/") != Some(id) {
                tracing::warn!(uri = %doc.uri, "skipping a document with an invalid id");
            } else if !seen.insert(id) {
                tracing::warn!(
                    id,
                    "the listing holds this document twice; keeping the first"
                );
            } else {
                kept.push((doc, id));
            }
        }
        let named: Vec<Named> = kept
            .iter()
            .map(|(doc, id)| Named {
                id,
                raw: doc.filename.as_deref().unwrap_or(""),
            })
            .collect();
        let names = names::assign(&named, &[]);

        let dir_ino = self.documents_ino();
        let old: Vec<u64> = self.dirs[&dir_ino].entries.values().copied().collect();
        let mut entries = BTreeMap::new();
        for ((doc, id), name) in kept.iter().zip(names) {
            let object = ObjectId {
                kind: ObjectKind::Document,
                id: (*id).to_owned(),
            };
            let ino = self.object_ino(&object);
            let info = FileInfo {
                object,
                size: doc.size,
                created: doc.created_at.into(),
            };
            self.files.insert(ino, Arc::new(info));
            entries.insert(name, ino);
        }
        let live: HashSet<u64> = entries.values().copied().collect();
        for ino in old.into_iter().filter(|i| !live.contains(i)) {
            self.files.remove(&ino);
        }
        self.dirs.get_mut(&dir_ino).expect("documents dir").entries = entries;
        docs.len() - kept.len()
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, name: &str, size: Option<u64>) -> Document {
        serde_json::from_value(serde_json::json!({
            "$uri": format!("/api/v1/documents/{id}"),
            "created_at": "2020-01-02T03:04:05+00:00",
            "filename": name, "size": size,
        }))
        .unwrap()
    }

    #[test]
    fn inodes_survive_refreshes_and_vanished_files_leave() {
        let mut c = Catalog::new();
        let d = c.documents_ino();
        c.set_documents(&[doc("aaaa", "a.txt", Some(1)), doc("bbbb", "b.txt", None)]);
        let a = c.lookup(d, "a.txt").unwrap();
        let b = c.lookup(d, "b.txt").unwrap();
        assert_eq!(c.file(b).unwrap().size, None);
        c.set_documents(&[doc("cccc", "c.txt", Some(3)), doc("aaaa", "a.txt", Some(1))]);
        assert_eq!(c.lookup(d, "a.txt"), Some(a));
        assert_eq!(c.lookup(d, "b.txt"), None);
        assert!(c.file(b).is_none());
        assert_eq!(c.lookup(d, ".."), Some(ROOT_INO));
        assert_eq!(c.lookup(ROOT_INO, DOCUMENTS_DIR), Some(d));
    }

    #[test]
    fn real_listing_gets_unique_names_and_skips_bad_entries() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/reference/onecodex-api-v1/documents.json"
        );
        let mut docs: Vec<Document> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let n = docs.len();
        docs.push(docs[0].clone());
        docs.push(doc("../../etc", "evil", Some(1)));
        let mut c = Catalog::new();
        assert_eq!(c.set_documents(&docs), 2);
        let dir = c.documents_ino();
        let entries = &c.dirs[&dir].entries;
        assert_eq!(entries.len(), n);
        assert!(entries.contains_key("Röö's report.pdf"));
        assert!(entries.contains_key("andy's report.pdf"));
    }
}
