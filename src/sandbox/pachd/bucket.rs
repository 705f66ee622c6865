//! A cluster's object storage: a local directory with the same layout for every cluster, so a
//! cluster "deployed" on a copy of another's bucket sees its data.
//!
//! ```text
//! <bucket>/block/<block-id>      block bytes
//! <bucket>/object/<object-hash>  a serialized pfs.BlockRef: which block range holds the object
//! <bucket>/tag/<tag-name>        the object hash the tag points to
//! <bucket>/index/                reserved (optional)
//! ```
//! Objects are content-addressed (SHA-512 hex of the content, as pachd). Every write goes to a
//! temporary name first and is renamed into place, so readers never see partial files.

use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha512};

use crate::proto::pfs;

/// The bucket directory of one cluster.
#[derive(Clone, Debug)]
pub struct Bucket {
    root: PathBuf,
}

/// Whether `name` may be used as a file name in the bucket (no separators, no `..`).
pub fn valid_key(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.' | ':' | '='))
}

fn bad_key(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("'{name}' is not a valid block, object or tag name"),
    )
}

/// SHA-512 hex of `content`: the object hash pachd uses.
pub fn object_hash(content: &[u8]) -> String {
    hex::encode(Sha512::digest(content))
}

/// A block being written in pieces (restore's block ops, PutBlock); it appears under its name
/// only once [`BlockWriter::finish`] is called.
pub struct BlockWriter {
    file: io::BufWriter<fs::File>,
    temp: PathBuf,
    target: PathBuf,
    written: u64,
}

impl BlockWriter {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.written += bytes.len() as u64;
        self.file.write_all(bytes)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// Renames the block into place.
    pub fn finish(self) -> io::Result<u64> {
        let file = self.file.into_inner().map_err(|err| err.into_error())?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        Ok(self.written)
    }
}

impl Bucket {
    /// Opens (creating if needed) the bucket at `root`.
    pub fn open(root: &Path) -> io::Result<Bucket> {
        for sub in ["block", "object", "tag", "index", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        Ok(Bucket {
            root: root.to_path_buf(),
        })
    }

    /// The bucket directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn write_atomic(&self, target: &Path, bytes: &[u8]) -> io::Result<()> {
        let temp = self.temp_path();
        fs::write(&temp, bytes)?;
        fs::rename(&temp, target)
    }

    /// The path of a block.
    pub fn block_path(&self, id: &str) -> io::Result<PathBuf> {
        if !valid_key(id) {
            return Err(bad_key(id));
        }
        Ok(self.root.join("block").join(id))
    }

    /// Starts writing block `id` (replacing it when it exists: blocks are immutable in pachd,
    /// so a rewrite carries the same bytes).
    pub fn block_writer(&self, id: &str) -> io::Result<BlockWriter> {
        let target = self.block_path(id)?;
        let temp = self.temp_path();
        let file = fs::File::create(&temp)?;
        Ok(BlockWriter {
            file: io::BufWriter::with_capacity(1 << 20, file),
            temp,
            target,
            written: 0,
        })
    }

    /// Writes a whole block.
    pub fn put_block(&self, id: &str, bytes: &[u8]) -> io::Result<()> {
        let target = self.block_path(id)?;
        self.write_atomic(&target, bytes)
    }

    /// Whether block `id` exists.
    pub fn has_block(&self, id: &str) -> bool {
        self.block_path(id).map(|p| p.is_file()).unwrap_or(false)
    }

    /// The size of block `id`.
    pub fn block_len(&self, id: &str) -> io::Result<u64> {
        Ok(fs::metadata(self.block_path(id)?)?.len())
    }

    /// Reads `[lower, upper)` of block `id` (`upper == 0` with `lower == 0` means the whole block).
    pub fn read_block_range(&self, id: &str, lower: u64, upper: u64) -> io::Result<Vec<u8>> {
        let mut file = fs::File::open(self.block_path(id)?)?;
        if lower == 0 && upper == 0 {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
        if upper < lower {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("byte range {lower}..{upper} of block {id} is reversed"),
            ));
        }
        file.seek(SeekFrom::Start(lower))?;
        let mut bytes = vec![0; usize::try_from(upper - lower).unwrap_or(usize::MAX)];
        file.read_exact(&mut bytes)?;
        Ok(bytes)
    }

    /// Opens block `id` for streaming reads.
    pub fn open_block(&self, id: &str) -> io::Result<fs::File> {
        fs::File::open(self.block_path(id)?)
    }

    /// Every block id, sorted.
    pub fn list_blocks(&self) -> io::Result<Vec<String>> {
        list_dir(&self.root.join("block"))
    }

    fn object_path(&self, hash: &str) -> io::Result<PathBuf> {
        if !valid_key(hash) {
            return Err(bad_key(hash));
        }
        Ok(self.root.join("object").join(hash))
    }

    /// Records that object `hash` is the range `block_ref` (CreateObject).
    pub fn put_object_ref(&self, hash: &str, block_ref: &pfs::BlockRef) -> io::Result<()> {
        let target = self.object_path(hash)?;
        self.write_atomic(&target, &block_ref.encode_to_vec())
    }

    /// Where object `hash` lives, if it exists.
    pub fn object_ref(&self, hash: &str) -> io::Result<Option<pfs::BlockRef>> {
        let path = self.object_path(hash)?;
        match fs::read(&path) {
            Ok(bytes) => pfs::BlockRef::decode(bytes.as_slice())
                .map(Some)
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Whether object `hash` exists.
    pub fn has_object(&self, hash: &str) -> bool {
        self.object_path(hash).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Every object hash, sorted.
    pub fn list_objects(&self) -> io::Result<Vec<String>> {
        list_dir(&self.root.join("object"))
    }

    /// The content of object `hash`.
    pub fn read_object(&self, hash: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(block_ref) = self.object_ref(hash)? else {
            return Ok(None);
        };
        let block = block_ref
            .block
            .as_ref()
            .map(|b| b.hash.as_str())
            .unwrap_or("");
        let range = block_ref.range.unwrap_or_default();
        if range.lower == range.upper {
            return Ok(Some(Vec::new()));
        }
        self.read_block_range(block, range.lower, range.upper)
            .map(Some)
    }

    /// Stores `content` as an object (in a block of its own) and returns its hash; an existing
    /// object with the same hash is reused.
    pub fn put_object(&self, content: &[u8]) -> io::Result<String> {
        let hash = object_hash(content);
        if self.has_object(&hash) {
            return Ok(hash);
        }
        let block_id = uuid::Uuid::new_v4().simple().to_string();
        self.put_block(&block_id, content)?;
        let block_ref = pfs::BlockRef {
            block: Some(pfs::Block { hash: block_id }),
            range: Some(pfs::ByteRange {
                lower: 0,
                upper: content.len() as u64,
            }),
        };
        self.put_object_ref(&hash, &block_ref)?;
        Ok(hash)
    }

    fn tag_path(&self, name: &str) -> io::Result<PathBuf> {
        if !valid_key(name) {
            return Err(bad_key(name));
        }
        Ok(self.root.join("tag").join(name))
    }

    /// Points tag `name` at object `hash`.
    pub fn put_tag(&self, name: &str, hash: &str) -> io::Result<()> {
        let target = self.tag_path(name)?;
        self.write_atomic(&target, hash.as_bytes())
    }

    /// The object tag `name` points at.
    pub fn tag_target(&self, name: &str) -> io::Result<Option<String>> {
        match fs::read_to_string(self.tag_path(name)?) {
            Ok(hash) => Ok(Some(hash.trim().to_owned())),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Every tag name, sorted.
    pub fn list_tags(&self) -> io::Result<Vec<String>> {
        list_dir(&self.root.join("tag"))
    }

    /// A path inside the bucket for a URL-mode dump object (`<bucket>/<object path>`).
    pub fn dump_path(&self, object: &str) -> io::Result<PathBuf> {
        let mut path = self.root.clone();
        for part in object.split('/').filter(|p| !p.is_empty()) {
            if part == ".." || part == "." {
                return Err(bad_key(object));
            }
            path.push(part);
        }
        if path == self.root {
            return Err(bad_key(object));
        }
        if !self.contains(&path) {
            return Err(outside(&path));
        }
        Ok(path)
    }

    /// `path` itself, for a URL-mode dump named `file://<path>`, when it lies inside the
    /// bucket (also once symbolic links are resolved): the sandbox's pachd reads and writes
    /// no other local file for a client.
    pub fn local_dump_path(&self, path: &Path) -> io::Result<PathBuf> {
        let lexical = path.is_absolute()
            && !path
                .components()
                .any(|part| matches!(part, Component::ParentDir | Component::CurDir));
        if lexical && self.contains(path) {
            Ok(path.to_path_buf())
        } else {
            Err(outside(path))
        }
    }

    /// Whether `path`, resolved, lies below the resolved bucket root. A dump being extracted
    /// does not exist yet, so its deepest existing ancestor is resolved instead.
    fn contains(&self, path: &Path) -> bool {
        let Ok(root) = fs::canonicalize(&self.root) else {
            return false;
        };
        let mut existing = path;
        let mut missing = Vec::new();
        let resolved = loop {
            match fs::canonicalize(existing) {
                Ok(resolved) => break resolved,
                Err(_) => {
                    let (Some(name), Some(parent)) = (existing.file_name(), existing.parent())
                    else {
                        return false;
                    };
                    missing.push(name);
                    existing = parent;
                }
            }
        };
        let resolved = missing
            .iter()
            .rev()
            .fold(resolved, |acc, name| acc.join(name));
        resolved != root && resolved.starts_with(&root)
    }
}

fn outside(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{} is outside the bucket", path.display()),
    )
}

fn list_dir(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_through_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::open(dir.path()).unwrap();
        let hash = bucket.put_object(b"hello").unwrap();
        assert_eq!(hash, object_hash(b"hello"));
        assert_eq!(bucket.read_object(&hash).unwrap().unwrap(), b"hello");
        assert_eq!(bucket.list_blocks().unwrap().len(), 1);
        bucket.put_tag("t1", &hash).unwrap();
        assert_eq!(bucket.tag_target("t1").unwrap().unwrap(), hash);
        assert!(bucket.put_tag("../x", &hash).is_err());
        let mut writer = bucket.block_writer("b1").unwrap();
        writer.write(b"abc").unwrap();
        writer.write(b"def").unwrap();
        assert!(!bucket.has_block("b1"));
        writer.finish().unwrap();
        assert_eq!(bucket.read_block_range("b1", 2, 4).unwrap(), b"cd");
    }
}
