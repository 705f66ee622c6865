//! Reading pachd's own hashtrees (the `tree`/`trees` objects of commits restored from a real
//! 1.9+ dump), so GetFile/ListFile work on them too and restored 1.9.0 commits get the size
//! pachd gives them.
//!
//! Both formats are sequences of `[int64 LE length][bytes]` records holding (key, NodeProto)
//! pairs, where a key is the path with `\0` in place of `/` (the root is a single `\0`):
//! * input and spec commits (`tree`): a bolt-DB dump — a `BucketHeader{bucket: "fs"}` record,
//!   the pairs, a `*` sentinel, then other buckets (ignored);
//! * output commits (`trees`): the bare ordered stream of pairs.
//!
//! File nodes point at content by `objects` (input commits) or `block_refs` (output commits).
//! The 1.7 single-proto hashtree is not read.

use prost::Message;

use super::tree::{FileEntry, FileTree};
use crate::proto::pfs;

#[derive(Clone, PartialEq, prost::Message)]
struct NodeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "vec", tag = "2")]
    hash: Vec<u8>,
    #[prost(int64, tag = "3")]
    subtree_size: i64,
    #[prost(message, optional, tag = "4")]
    file_node: Option<FileNodeProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FileNodeProto {
    #[prost(message, repeated, tag = "4")]
    objects: Vec<pfs::Object>,
    #[prost(message, repeated, tag = "5")]
    block_refs: Vec<pfs::BlockRef>,
}

const FS_HEADER: &[u8] = b"\n\x02fs";

fn records(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let len_bytes: [u8; 8] = bytes.get(pos..pos + 8)?.try_into().ok()?;
        let len = usize::try_from(i64::from_le_bytes(len_bytes)).ok()?;
        let start = pos + 8;
        out.push(bytes.get(start..start.checked_add(len)?)?);
        pos = start + len;
    }
    Some(out)
}

/// The (key, node) records of a hashtree object, up to the end of its `fs` bucket.
fn pairs(records: &[&[u8]]) -> Option<Vec<(Vec<u8>, NodeProto)>> {
    let pairs: &[&[u8]] = match records.first() {
        Some(first) if *first == FS_HEADER => &records[1..],
        Some(_) => records,
        None => return None,
    };
    let mut out = Vec::new();
    let mut iter = pairs.iter();
    while let Some(key) = iter.next() {
        if *key == b"*" {
            break;
        }
        let value = iter.next()?;
        out.push((key.to_vec(), NodeProto::decode(*value).ok()?));
    }
    Some(out)
}

/// The total bytes of a pachd hashtree's files, as pachd's `FSSize` reads it: the root
/// node's subtree size (0 for a tree without a root, an empty commit). `None` when the
/// format is not understood.
pub fn fs_size(bytes: &[u8]) -> Option<u64> {
    let records = records(bytes)?;
    let pairs = pairs(&records)?;
    let root = pairs
        .iter()
        .find(|(key, _)| key.as_slice() == b"\0" || key.is_empty());
    Some(root.map_or(0, |(_, node)| u64::try_from(node.subtree_size).unwrap_or(0)))
}

/// Tries to read a pachd hashtree object into a file tree; `None` when the format is not
/// understood.
pub fn parse(bytes: &[u8]) -> Option<FileTree> {
    let records = records(bytes)?;
    let pairs = pairs(&records)?;
    let mut tree = FileTree::default();
    for (key, node) in pairs {
        let Some(file) = node.file_node else {
            continue;
        };
        let path: String = String::from_utf8_lossy(&key)
            .chars()
            .map(|ch| if ch == '\0' { '/' } else { ch })
            .collect();
        tree.files.insert(
            super::tree::clean_path(&path),
            FileEntry {
                objects: file.objects.into_iter().map(|o| o.hash).collect(),
                size: u64::try_from(node.subtree_size).unwrap_or(0),
                block_refs: file
                    .block_refs
                    .into_iter()
                    .map(|r| {
                        let range = r.range.unwrap_or_default();
                        (
                            r.block.map(|b| b.hash).unwrap_or_default(),
                            range.lower,
                            range.upper,
                        )
                    })
                    .collect(),
            },
        );
    }
    Some(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as i64).to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn reads_both_hashtree_layouts() {
        let file = NodeProto {
            name: "a".into(),
            subtree_size: 3,
            file_node: Some(FileNodeProto {
                objects: vec![pfs::Object { hash: "h".into() }],
                block_refs: Vec::new(),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let root = NodeProto::default().encode_to_vec();
        let mut bolt = record(FS_HEADER);
        for part in [&b"\0"[..], &root, b"\0dir\0a", &file, b"*"] {
            bolt.extend(record(part));
        }
        let tree = parse(&bolt).unwrap();
        assert_eq!(tree.files["/dir/a"].objects, ["h"]);
        let mut stream = Vec::new();
        for part in [&b"\0"[..], &root, b"\0a", &file] {
            stream.extend(record(part));
        }
        assert_eq!(parse(&stream).unwrap().files["/a"].size, 3);
        assert!(parse(b"garbage").is_none());
    }

    #[test]
    fn the_size_of_a_1_9_tree_is_its_roots_subtree_size() {
        let root = NodeProto {
            subtree_size: 102_345,
            ..Default::default()
        }
        .encode_to_vec();
        let mut bolt = record(FS_HEADER);
        for part in [&b"\0"[..], &root, b"*", b"other-bucket"] {
            bolt.extend(record(part));
        }
        assert_eq!(fs_size(&bolt), Some(102_345));
        assert_eq!(fs_size(&record(FS_HEADER)), Some(0), "an empty commit");
        assert_eq!(fs_size(b"garbage"), None);
    }
}
