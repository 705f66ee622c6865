//! The run journal: which steps of a script finished, with their results, so a re-run after a
//! failure resumes at the failed step.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What happened to one step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    /// The step's name, unique within the script.
    pub name: String,
    /// `done` or `failed`.
    pub status: String,
    /// The step's result (done) or error text (failed).
    pub result: serde_json::Value,
    /// Wall-clock seconds the step took.
    pub seconds: f64,
    /// When it ended, RFC 3339.
    pub ended_at: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct JournalFile {
    script: String,
    #[serde(default)]
    finished: bool,
    #[serde(default)]
    steps: Vec<StepRecord>,
}

/// Errors reading or writing a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file could not be read or written.
    #[error("failed to access journal {path}")]
    Io {
        /// The journal path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a journal.
    #[error("journal {path} is not valid: {message}")]
    Invalid {
        /// The journal path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The journal belongs to another script.
    #[error("journal {path} belongs to script '{other}', not '{script}'; pass another --journal")]
    OtherScript {
        /// The journal path.
        path: PathBuf,
        /// The script that wrote it.
        other: String,
        /// The script now running.
        script: String,
    },
}

impl crate::kind::Kinded for JournalError {
    fn kind(&self) -> crate::kind::Kind {
        match self {
            JournalError::Io { .. } => crate::kind::Kind::Io,
            JournalError::Invalid { .. } | JournalError::OtherScript { .. } => {
                crate::kind::Kind::Usage
            }
        }
    }
}

/// A journal file bound to one script.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: JournalFile,
}

impl Journal {
    /// Opens the journal at `path` for `script`. A missing file, or one whose run finished, starts
    /// a fresh journal; one left by another script is refused.
    pub fn open(path: &Path, script: &str) -> Result<Journal, JournalError> {
        let fresh = JournalFile {
            script: script.to_owned(),
            ..JournalFile::default()
        };
        let file = match std::fs::read(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => fresh,
            Err(source) => {
                return Err(JournalError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
            Ok(bytes) => {
                let existing: JournalFile =
                    serde_json::from_slice(&bytes).map_err(|error| JournalError::Invalid {
                        path: path.to_path_buf(),
                        message: error.to_string(),
                    })?;
                if existing.script != script {
                    return Err(JournalError::OtherScript {
                        path: path.to_path_buf(),
                        other: existing.script,
                        script: script.to_owned(),
                    });
                }
                if existing.finished { fresh } else { existing }
            }
        };
        Ok(Journal {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of a step that finished in an earlier run, if any.
    pub fn done(&self, name: &str) -> Option<&StepRecord> {
        self.file
            .steps
            .iter()
            .find(|step| step.name == name && step.status == "done")
    }

    /// Every record, in the order steps ended.
    pub fn steps(&self) -> &[StepRecord] {
        &self.file.steps
    }

    /// Records a step's outcome (replacing an earlier record of the same name) and saves.
    pub fn record(&mut self, record: StepRecord) -> Result<(), JournalError> {
        self.file.steps.retain(|step| step.name != record.name);
        self.file.steps.push(record);
        self.save()
    }

    /// Drops the record of step `name` (so a later run does it again) and saves.
    pub fn forget(&mut self, name: &str) -> Result<(), JournalError> {
        let before = self.file.steps.len();
        self.file.steps.retain(|step| step.name != name);
        if self.file.steps.len() == before {
            return Ok(());
        }
        self.save()
    }

    /// Marks the whole run finished, so the next run starts fresh.
    pub fn finish(&mut self) -> Result<(), JournalError> {
        self.file.finished = true;
        self.save()
    }

    fn save(&self) -> Result<(), JournalError> {
        let text =
            serde_json::to_string_pretty(&self.file).map_err(|error| JournalError::Invalid {
                path: self.path.clone(),
                message: error.to_string(),
            })?;
        // Masking inside JSON strings keeps the document valid: `***` needs no escaping.
        let bytes = crate::redact::redact(&text).into_bytes();
        if let Some(parent) = self.path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        crate::fsutil::write_atomic(&self.path, &bytes).map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, status: &str) -> StepRecord {
        StepRecord {
            name: name.to_owned(),
            status: status.to_owned(),
            result: serde_json::json!(1),
            seconds: 0.0,
            ended_at: String::new(),
        }
    }

    #[test]
    fn done_steps_survive_reopening_until_the_run_finishes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j.json");
        let mut journal = Journal::open(&path, "migrate").expect("open");
        journal.record(record("quiesce", "done")).expect("record");
        journal.record(record("extract", "failed")).expect("record");
        let reopened = Journal::open(&path, "migrate").expect("reopen");
        assert!(reopened.done("quiesce").is_some());
        assert!(reopened.done("extract").is_none());
        let mut reopened = reopened;
        reopened.finish().expect("finish");
        assert!(
            Journal::open(&path, "migrate")
                .expect("fresh")
                .steps()
                .is_empty()
        );
    }

    #[test]
    fn journal_of_another_script_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j.json");
        Journal::open(&path, "backup")
            .expect("open")
            .record(record("a", "done"))
            .expect("record");
        let error = Journal::open(&path, "migrate").expect_err("other script");
        assert!(error.to_string().contains("belongs to script 'backup'"));
    }
}
