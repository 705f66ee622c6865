//! Which object-store keys a dump depends on: the tree and datums objects its commits point
//! at, plus the blocks, objects and tags it carries itself. A `--no-objects` dump restores
//! only onto a bucket that holds all of them (pachd 1.9+ layout: `block/`, `object/`, `tag/`).

use std::collections::BTreeSet;

use super::error::BackupError;
use super::location::Location;
use super::op::{Op, messages_at, string_at};
use super::reader::RecordReader;
use super::wire::OpKind;

/// `(folder, name)` pairs (`("object", hash)`, `("block", id)`, `("tag", name)`), sorted and
/// without duplicates.
pub fn of(location: &Location) -> Result<Vec<(&'static str, String)>, BackupError> {
    let mut keys: BTreeSet<(&'static str, String)> = BTreeSet::new();
    let mut reader = RecordReader::new(location.open()?)?;
    while let Some(record) = reader.next_record()? {
        let op = Op::from_record(record)?;
        match op.kind {
            OpKind::Commit => {
                let request = op.request()?;
                for path in [&["tree", "hash"][..], &["datums", "hash"][..]] {
                    if let Some(hash) = string_at(&request, path).filter(|hash| !hash.is_empty()) {
                        keys.insert(("object", hash));
                    }
                }
                for tree in messages_at(&request, "trees") {
                    if let Some(hash) = string_at(&tree, &["hash"]).filter(|hash| !hash.is_empty())
                    {
                        keys.insert(("object", hash));
                    }
                }
            }
            OpKind::Block => {
                if let Some(id) = string_at(&op.request()?, &["block", "hash"]) {
                    keys.insert(("block", id));
                }
            }
            OpKind::CreateObject => {
                if let Some(hash) = string_at(&op.request()?, &["object", "hash"]) {
                    keys.insert(("object", hash));
                }
            }
            OpKind::Tag => {
                for tag in messages_at(&op.request()?, "tags") {
                    if let Some(name) = string_at(&tag, &["name"]) {
                        keys.insert(("tag", name));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(keys.into_iter().collect())
}
