//! `verify_clone`: compares two listings (optionally content hashes) and checks that every
//! block, object, tag and index a backup references exists in the destination, using the key
//! layout pachd 1.9+ keeps under its storage root (`block/`, `object/`, `tag/`, `index/`).

use std::collections::HashMap;

use futures::stream::{self, StreamExt};

use super::bucket::{Bucket, Entry};
use super::error::StoreError;
use super::sync::{index, same_content};
use crate::kind::Kind;

/// What kind of stored thing a backup references.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReferenceKind {
    /// A block, stored at `block/<id>`.
    Block,
    /// An object, stored at `object/<hash>`.
    Object,
    /// A tag, stored at `tag/<name>`.
    Tag,
    /// An index, stored at `index/<name>`.
    Index,
}

impl ReferenceKind {
    /// The folder under the storage root.
    pub fn folder(self) -> &'static str {
        match self {
            ReferenceKind::Block => "block",
            ReferenceKind::Object => "object",
            ReferenceKind::Tag => "tag",
            ReferenceKind::Index => "index",
        }
    }
}

/// One stored thing a backup needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Its kind.
    pub kind: ReferenceKind,
    /// The block id, object hash, tag or index name.
    pub name: String,
}

impl Reference {
    /// The key under the storage root.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind.folder(), self.name)
    }

    /// Parses `block/<id>`, `object/<hash>`, `tag/<name>` or `index/<name>`.
    pub fn parse(text: &str) -> Result<Reference, StoreError> {
        let bad = || {
            StoreError::Refused(
                format!(
                    "read reference '{text}': expected block/<id>, object/<hash>, tag/<name> or index/<name>"
                ),
                Kind::Invalid,
            )
        };
        let (folder, name) = text.split_once('/').ok_or_else(bad)?;
        let kind = match folder {
            "block" => ReferenceKind::Block,
            "object" => ReferenceKind::Object,
            "tag" => ReferenceKind::Tag,
            "index" => ReferenceKind::Index,
            _ => return Err(bad()),
        };
        if name.is_empty() {
            return Err(bad());
        }
        Ok(Reference {
            kind,
            name: name.to_owned(),
        })
    }
}

/// The blocks, objects and tags the backup at `source` (a path or URL) references: the objects commits point
/// at (trees, datums) and the blocks, objects and tags the dump itself carries.
pub fn referenced_keys_from_backup(source: &str) -> Result<Vec<Reference>, StoreError> {
    // A dump at a URL (as `migrate -a backup=file://...` writes it) is read like a path.
    let location = crate::backup::Location::parse(source);
    let found = crate::backup::references::of(&location).map_err(|error| {
        StoreError::Refused(
            format!(
                "read references from {}: {}",
                location.display(),
                crate::kind::chain_text(&error)
            ),
            Kind::Invalid,
        )
    })?;
    Ok(found
        .into_iter()
        .map(|(folder, name)| Reference {
            kind: match folder {
                "block" => ReferenceKind::Block,
                "tag" => ReferenceKind::Tag,
                _ => ReferenceKind::Object,
            },
            name,
        })
        .collect())
}

/// How `verify_clone` compares.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Compare content (MD5 ETags when both sides have them, SHA-256 otherwise).
    pub checksum: bool,
    /// Folders listed at the same time, and objects hashed at the same time.
    pub width: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            checksum: false,
            width: 16,
        }
    }
}

/// What `verify_clone` found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Source URL.
    pub src: String,
    /// Destination URL.
    pub dst: String,
    /// Objects in the source.
    pub src_objects: u64,
    /// Objects in the destination.
    pub dst_objects: u64,
    /// Source keys missing from the destination.
    pub missing: Vec<String>,
    /// Keys whose size (or content, with `checksum`) differs.
    pub different: Vec<String>,
    /// Destination objects not in the source.
    pub extra: u64,
    /// References checked.
    pub references_checked: u64,
    /// References whose key is not in the destination.
    pub missing_references: Vec<String>,
}

impl VerifyReport {
    /// Whether the destination holds everything the source and the references need.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.different.is_empty() && self.missing_references.is_empty()
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} -> {}: {} ({} source objects, {} missing, {} different, {} extra; {} references, {} missing)",
            self.src,
            self.dst,
            if self.is_ok() { "ok" } else { "NOT OK" },
            self.src_objects,
            self.missing.len(),
            self.different.len(),
            self.extra,
            self.references_checked,
            self.missing_references.len()
        )
    }
}

/// Compares `src` and `dst` and checks `references` against `dst`.
pub async fn verify_clone(
    src: &Bucket,
    dst: &Bucket,
    options: &VerifyOptions,
    references: impl IntoIterator<Item = Reference>,
) -> Result<VerifyReport, StoreError> {
    let width = options.width.max(1);
    let (src_index, dst_index) = futures::try_join!(index(src, width), index(dst, width))?;
    let mut report = VerifyReport {
        src: src.url().to_string(),
        dst: dst.url().to_string(),
        src_objects: src_index.len() as u64,
        dst_objects: dst_index.len() as u64,
        ..VerifyReport::default()
    };
    let mut to_hash: Vec<(&Entry, &Entry)> = Vec::new();
    for (key, entry) in &src_index {
        match dst_index.get(key) {
            None => report.missing.push(key.clone()),
            Some(copy) if copy.size != entry.size => report.different.push(key.clone()),
            Some(copy) if options.checksum => to_hash.push((entry, copy)),
            Some(_) => {}
        }
    }
    report.extra = dst_index
        .keys()
        .filter(|key| !src_index.contains_key(*key))
        .count() as u64;
    let compared: Vec<Result<Option<String>, StoreError>> = stream::iter(to_hash)
        .map(|(left, right)| async move {
            Ok((!same_content(src, dst, left, right).await?).then(|| left.key.clone()))
        })
        .buffer_unordered(width)
        .collect()
        .await;
    for outcome in compared {
        if let Some(key) = outcome? {
            report.different.push(key);
        }
    }
    let present = |key: &str| dst_index.contains_key(key);
    let mut seen: HashMap<String, ()> = HashMap::new();
    for reference in references {
        let key = reference.key();
        if seen.insert(key.clone(), ()).is_some() {
            continue;
        }
        report.references_checked += 1;
        if !present(&key) {
            report.missing_references.push(key);
        }
    }
    report.missing.sort();
    report.different.sort();
    report.missing_references.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_into_the_pachd_layout() {
        let reference = Reference::parse("block/abc").expect("parses");
        assert_eq!(reference.kind, ReferenceKind::Block);
        assert_eq!(reference.key(), "block/abc");
        assert!(Reference::parse("blocks/abc").is_err());
        assert!(Reference::parse("tag/").is_err());
    }

    #[test]
    fn backup_references_name_a_missing_backup() {
        let error = referenced_keys_from_backup("no-such.dump").expect_err("missing");
        assert!(
            error
                .to_string()
                .contains("read references from no-such.dump"),
            "{error}"
        );
    }

    #[test]
    fn backup_references_list_what_the_fixture_needs() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/pachd-1.11-auth.dump");
        let references =
            referenced_keys_from_backup(&fixture.display().to_string()).expect("reads");
        let count = |kind: ReferenceKind| references.iter().filter(|r| r.kind == kind).count();
        assert_eq!(count(ReferenceKind::Block), 209);
        assert_eq!(count(ReferenceKind::Tag), 40);
        // 149 created objects plus the trees of the input and spec commits.
        assert!(count(ReferenceKind::Object) >= 149);
    }
}
