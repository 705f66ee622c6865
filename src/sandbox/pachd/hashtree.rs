//! Reading pachd's own hashtrees (the `tree`/`trees` objects of commits restored from a real
//! dump). Not supported yet: listing files of such commits reports why.

use super::tree::FileTree;

/// Tries to read a pachd hashtree object into a file tree; `None` when the format is not
/// understood.
pub fn parse(_bytes: &[u8]) -> Option<FileTree> {
    None
}
