//! Where the REPL keeps its history: `$ANKUS_HISTORY`, else `ankus/history.txt` under the
//! user's data directory.

use std::path::PathBuf;

/// The history file, if there is anywhere to keep one.
pub fn history_path() -> Option<PathBuf> {
    match std::env::var_os("ANKUS_HISTORY") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => dirs::data_dir().map(|dir| dir.join("ankus").join("history.txt")),
    }
}
