//! Commit trees written by the sandbox: a map from file path to the objects holding its content,
//! stored as an object in the bucket (the commit's `tree`). The bytes start with [`MAGIC`] so
//! they are never mistaken for a pachd hashtree (see [`super::hashtree`] for those).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The first bytes of a sandbox tree object.
pub const MAGIC: &[u8] = b"ankus-sandbox-tree/1\n";

/// One file: its content is the concatenation of `objects`, then of `block_refs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Object hashes, in order.
    pub objects: Vec<String>,
    /// Total size in bytes.
    pub size: u64,
    /// Block ranges (block id, lower, upper): how pachd's output commits point at content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_refs: Vec<(String, u64, u64)>,
}

/// A commit's files, keyed by absolute path (`/a/b`); directories are implicit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTree {
    /// Path → file.
    pub files: BTreeMap<String, FileEntry>,
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A file.
    File(String, FileEntry),
    /// A directory with its total size and direct children names.
    Dir(String, u64, Vec<String>),
}

/// Normalizes a client path: leading `/`, no trailing `/`, no empty segments; `/` is the root.
pub fn clean_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

impl FileTree {
    /// Serializes the tree into object bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(serde_json::to_vec(self).expect("a file tree always serializes"));
        bytes
    }

    /// Parses object bytes; `None` when they are not a sandbox tree.
    pub fn decode(bytes: &[u8]) -> Option<FileTree> {
        let body = bytes.strip_prefix(MAGIC)?;
        serde_json::from_slice(body).ok()
    }

    /// Total bytes of all files.
    pub fn size(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// Whether `path` names a directory that holds files.
    fn is_dir(&self, path: &str) -> bool {
        if path == "/" {
            return true;
        }
        let prefix = format!("{path}/");
        self.files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    /// The node at `path`, if any.
    pub fn node(&self, path: &str) -> Option<Node> {
        let path = clean_path(path);
        if let Some(entry) = self.files.get(&path) {
            return Some(Node::File(path, entry.clone()));
        }
        if !self.is_dir(&path) {
            return None;
        }
        let prefix = if path == "/" {
            "/".to_owned()
        } else {
            format!("{path}/")
        };
        let mut children: Vec<String> = Vec::new();
        let mut size = 0;
        for (file_path, entry) in self.files.range(prefix.clone()..) {
            let Some(rest) = file_path.strip_prefix(&prefix) else {
                break;
            };
            size += entry.size;
            let child = rest.split('/').next().unwrap_or(rest).to_owned();
            if children.last() != Some(&child) {
                children.push(child);
            }
        }
        Some(Node::Dir(path, size, children))
    }

    /// The direct children of directory `path` (or the file itself when `path` is a file).
    pub fn list(&self, path: &str) -> Option<Vec<Node>> {
        match self.node(path)? {
            Node::File(p, e) => Some(vec![Node::File(p, e)]),
            Node::Dir(dir, _, children) => {
                let base = if dir == "/" { String::new() } else { dir };
                Some(
                    children
                        .iter()
                        .filter_map(|child| self.node(&format!("{base}/{child}")))
                        .collect(),
                )
            }
        }
    }

    /// Every file and directory whose path matches the glob `pattern` (`*`, `?`, `**`).
    pub fn glob(&self, pattern: &str) -> Vec<Node> {
        let pattern = clean_path(pattern);
        let mut paths: Vec<String> = Vec::new();
        for file_path in self.files.keys() {
            let mut prefix = String::new();
            for part in file_path.split('/').filter(|p| !p.is_empty()) {
                prefix.push('/');
                prefix.push_str(part);
                if !paths.contains(&prefix) && glob_match(&pattern, &prefix) {
                    paths.push(prefix.clone());
                }
            }
        }
        if pattern == "/" {
            paths.insert(0, "/".to_owned());
        }
        paths.iter().filter_map(|p| self.node(p)).collect()
    }
}

/// Matches `path` against a glob: `*` and `?` stay within a segment, `**` spans segments.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => (0..=s.len()).any(|i| go(&p[2..], &s[i..])),
            Some(b'*') => {
                let mut i = 0;
                loop {
                    if go(&p[1..], &s[i..]) {
                        return true;
                    }
                    if i >= s.len() || s[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some(b'?') => !s.is_empty() && s[0] != b'/' && go(&p[1..], &s[1..]),
            Some(&ch) => s.first() == Some(&ch) && go(&p[1..], &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64) -> FileEntry {
        FileEntry {
            objects: vec!["x".into()],
            size,
            block_refs: Vec::new(),
        }
    }

    #[test]
    fn lists_directories_and_files() {
        let mut tree = FileTree::default();
        tree.files.insert("/a/b".into(), entry(2));
        tree.files.insert("/a/c/d".into(), entry(3));
        tree.files.insert("/e".into(), entry(1));
        let root = tree.list("/").unwrap();
        assert_eq!(root.len(), 2);
        assert!(matches!(&root[0], Node::Dir(p, 5, c) if p == "/a" && c.len() == 2));
        assert!(matches!(&root[1], Node::File(p, _) if p == "/e"));
        assert!(tree.list("/zz").is_none());
        assert_eq!(FileTree::decode(&tree.encode()).unwrap(), tree);
        assert_eq!(tree.glob("/a/*").len(), 2);
        assert_eq!(tree.glob("/**").len(), 5);
        assert_eq!(clean_path("a//b/"), "/a/b");
    }
}
