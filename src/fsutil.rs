//! Small file helpers shared by every layer: atomic writes (temporary name, fsync, rename).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory is written,
/// synced and renamed over the target, so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file being written under a temporary name; it appears at its final path only on
/// [`AtomicFile::commit`], and is removed if dropped before that.
pub struct AtomicFile {
    temp: tempfile::NamedTempFile,
    target: std::path::PathBuf,
}

impl AtomicFile {
    /// Starts writing a file that will be renamed to `target` on commit.
    pub fn create(target: &Path) -> std::io::Result<Self> {
        let dir = match target.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".partial")
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            temp,
            target: target.to_path_buf(),
        })
    }

    /// Syncs the data and renames the file into place.
    pub fn commit(self) -> std::io::Result<()> {
        self.temp.as_file().sync_all()?;
        self.temp
            .persist(&self.target)
            .map_err(|persist_error| persist_error.error)?;
        if let Some(parent) = self.target.parent()
            && let Ok(dir) = std::fs::File::open(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            })
        {
            // A directory fsync makes the rename durable; not every filesystem supports it.
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Syncs the data written so far, so a full disk shows here rather than at the rename.
    pub fn sync(&self) -> std::io::Result<()> {
        self.temp.as_file().sync_all()
    }

    /// The path the data goes to while it is written.
    pub fn temp_path(&self) -> &Path {
        self.temp.path()
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.temp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_atomic_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("out.dump");
        {
            let mut file = AtomicFile::create(&target).expect("create");
            file.write_all(b"half").expect("write");
        }
        assert!(!target.exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }

    #[test]
    fn committed_atomic_file_appears_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let target = dir.path().join("out.txt");
        write_atomic(&target, b"hello").expect("write");
        assert_eq!(std::fs::read(&target).expect("read"), b"hello");
    }
}
