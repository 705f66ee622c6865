//! The run journal: which steps of a script finished, with their results, so a re-run after a
//! failure resumes at the failed step; what a step is about to do (write-ahead intents), so a
//! successor of a run that was killed knows exactly what to undo; and the run's identity, held
//! under an exclusive lock so two runs never share one journal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Script arguments that steer how a run goes rather than what it acts on: a re-run may change
/// them and still resume (rehearsal controls, time limits, and the flags that let a re-run get
/// past a refusal, such as `force` after a partial restore).
pub const RUN_CONTROLS: &[&str] = &[
    "fail_at",
    "pause_after",
    "pause_seconds",
    "hold_at",
    "hold_seconds",
    "take_over",
    "force",
    "allow_versions",
    "kube_timeout",
    "wait",
];

/// The run's arguments as the journal keys them: each value's digest (the journal never
/// holds an argument in clear), run controls left out.
fn fingerprint(args: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    args.iter()
        .filter(|(key, _)| !RUN_CONTROLS.contains(&key.as_str()))
        .map(|(key, value)| {
            let digest = Sha256::digest(value.as_bytes());
            (key.clone(), hex::encode(&digest[..12]))
        })
        .collect()
}

/// The arguments of the earlier run that a re-run changed or dropped, as `key (changed)` /
/// `key (removed)`. An argument the earlier run did not have may be added (the legacy flows'
/// re-run after their redeploy stop adds `deploy=`): the finished steps did not use it.
fn changes(then: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<String> {
    let mut changed = Vec::new();
    for (key, value) in now {
        if then.get(key).is_some_and(|before| before != value) {
            changed.push(format!("{key} (changed)"));
        }
    }
    for key in then.keys().filter(|key| !now.contains_key(*key)) {
        changed.push(format!("{key} (removed)"));
    }
    changed
}

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
    /// The run's identity: kept across re-runs until the run finishes, so a re-run knows the
    /// marks an earlier attempt left on a cluster as its own.
    #[serde(default)]
    run: String,
    #[serde(default)]
    finished: bool,
    /// The run's arguments (digests), so a re-run with other arguments is not mixed into it;
    /// absent in journals written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    args: Option<BTreeMap<String, String>>,
    #[serde(default)]
    steps: Vec<StepRecord>,
    /// Write-ahead records: what the run is about to change, saved before it changes it.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    intents: serde_json::Map<String, serde_json::Value>,
}

/// A new run identity.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
    /// Another process holds the journal.
    #[error(
        "journal {path} is in use by another ankus run ({holder}); wait for it to end, or pass another --journal"
    )]
    Busy {
        /// The journal path.
        path: PathBuf,
        /// Who holds it, as that run wrote it in the lock file.
        holder: String,
    },
    /// The journal records a run with other arguments.
    #[error(
        "journal {path} records a run of '{script}' with other arguments ({}): re-run with the \
         arguments it had to resume it, or pass --restart to start over",
        .changes.join(", ")
    )]
    ArgsChanged {
        /// The journal path.
        path: PathBuf,
        /// The script.
        script: String,
        /// `key (changed)`, `key (removed)`.
        changes: Vec<String>,
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
            JournalError::Busy { .. } => crate::kind::Kind::Conflict,
            JournalError::Invalid { .. }
            | JournalError::OtherScript { .. }
            | JournalError::ArgsChanged { .. } => crate::kind::Kind::Usage,
        }
    }
}

/// A journal file bound to one script, locked for this process while it is open.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: JournalFile,
    /// `PATH.lock`, exclusively locked (released when the process ends, however it ends).
    _lock: std::fs::File,
}

/// The lock file beside a journal.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the exclusive lock beside `path`, writing who holds it for the next one to name.
fn take_lock(path: &Path, script: &str) -> Result<std::fs::File, JournalError> {
    use std::io::{Read, Seek, Write};
    let lock = lock_path(path);
    let io = |source| JournalError::Io {
        path: lock.clone(),
        source,
    };
    if let Some(parent) = lock.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.take(512).read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(JournalError::Busy {
                path: path.to_path_buf(),
                holder: if holder.is_empty() {
                    "unknown process".to_owned()
                } else {
                    holder.to_owned()
                },
            });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    let holder = format!(
        "script {script}, pid {} on {}",
        std::process::id(),
        crate::holder::hostname()
    );
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(holder.as_bytes()).map_err(io)?;
    Ok(file)
}

impl Journal {
    /// Opens the journal at `path` for `script`, for a run without arguments.
    pub fn open(path: &Path, script: &str) -> Result<Journal, JournalError> {
        Journal::open_run(path, script, &BTreeMap::new(), false).map(|(journal, _)| journal)
    }

    /// Opens the journal at `path` for a run of `script` with `args`. A missing file, or one
    /// whose run finished, starts a fresh journal; one left by another script is refused, and
    /// so is one whose unfinished run had other arguments (but for [`RUN_CONTROLS`]) unless
    /// `restart`: then its finished steps are forgotten, while its run identity and intents
    /// stay (what it left on a cluster is still put back). Returns the journal and how many
    /// finished steps a restart forgot.
    pub fn open_run(
        path: &Path,
        script: &str,
        args: &BTreeMap<String, String>,
        restart: bool,
    ) -> Result<(Journal, usize), JournalError> {
        let lock = take_lock(path, script)?;
        let args = fingerprint(args);
        let fresh = JournalFile {
            script: script.to_owned(),
            run: new_run_id(),
            args: Some(args.clone()),
            ..JournalFile::default()
        };
        let mut forgotten = 0;
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
                if existing.finished {
                    fresh
                } else {
                    let mut existing = existing;
                    if existing.run.is_empty() {
                        // Written before runs had an identity.
                        existing.run = fresh.run;
                    }
                    let differ = match &existing.args {
                        Some(then) => changes(then, &args),
                        // Written before journals knew their arguments.
                        None => Vec::new(),
                    };
                    // Only finished steps (whose results a resume reuses) and intents bind a
                    // run to its arguments; a run that only failed can be retried with others.
                    let pending = existing.steps.iter().any(|step| step.status == "done")
                        || !existing.intents.is_empty();
                    if restart {
                        forgotten = existing
                            .steps
                            .iter()
                            .filter(|step| step.status == "done")
                            .count();
                        existing.steps.clear();
                    } else if pending && !differ.is_empty() {
                        return Err(JournalError::ArgsChanged {
                            path: path.to_path_buf(),
                            script: script.to_owned(),
                            changes: differ,
                        });
                    }
                    existing.args = Some(args);
                    existing
                }
            }
        };
        let journal = Journal {
            path: path.to_path_buf(),
            file,
            _lock: lock,
        };
        if forgotten > 0 {
            journal.save()?;
        }
        Ok((journal, forgotten))
    }

    /// The script the journal belongs to.
    pub fn script(&self) -> &str {
        &self.file.script
    }

    /// The run's identity (the same for every re-run until the run finishes).
    pub fn run_id(&self) -> &str {
        &self.file.run
    }

    /// Records, and saves before returning, what the run is about to do under `key`.
    pub fn intend(&mut self, key: &str, value: serde_json::Value) -> Result<(), JournalError> {
        self.file.intents.insert(key.to_owned(), value);
        self.save()
    }

    /// What an earlier `intend` recorded under `key`, in this run or an earlier attempt.
    pub fn intended(&self, key: &str) -> Option<&serde_json::Value> {
        self.file.intents.get(key)
    }

    /// Drops the intent under `key` (what it announced is done or undone) and saves.
    pub fn settle(&mut self, key: &str) -> Result<(), JournalError> {
        if self.file.intents.remove(key).is_none() {
            return Ok(());
        }
        self.save()
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
        drop(journal);
        let mut reopened = Journal::open(&path, "migrate").expect("reopen");
        assert!(reopened.done("quiesce").is_some());
        assert!(reopened.done("extract").is_none());
        reopened.finish().expect("finish");
        drop(reopened);
        assert!(
            Journal::open(&path, "migrate")
                .expect("fresh")
                .steps()
                .is_empty()
        );
    }

    #[test]
    fn intents_and_the_run_id_survive_a_killed_run_and_end_with_the_run() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j.json");
        let mut journal = Journal::open(&path, "migrate").expect("open");
        let run = journal.run_id().to_owned();
        journal
            .intend("quiesce", serde_json::json!({ "pausing": ["a", "b"] }))
            .expect("intend");
        drop(journal);
        let mut reopened = Journal::open(&path, "migrate").expect("reopen");
        assert_eq!(reopened.run_id(), run, "a re-run is the same run");
        assert_eq!(
            reopened.intended("quiesce"),
            Some(&serde_json::json!({ "pausing": ["a", "b"] }))
        );
        reopened.settle("quiesce").expect("settle");
        assert_eq!(reopened.intended("quiesce"), None);
        reopened.finish().expect("finish");
        drop(reopened);
        let next = Journal::open(&path, "migrate").expect("next run");
        assert_ne!(
            next.run_id(),
            run,
            "a finished run's successor is a new run"
        );
    }

    #[test]
    fn a_second_run_on_the_same_journal_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j.json");
        let held = Journal::open(&path, "migrate").expect("open");
        let error = Journal::open(&path, "migrate").expect_err("busy");
        let text = error.to_string();
        assert!(text.contains("in use by another ankus run"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        Journal::open(&path, "migrate").expect("free again");
    }

    #[test]
    fn a_rerun_with_other_arguments_is_refused_naming_them_and_restart_starts_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("j.json");
        let args = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect()
        };
        let first = args(&[
            ("backup", "./m.dump"),
            ("to", "new"),
            ("fail_at", "restore"),
        ]);
        let (mut journal, _) = Journal::open_run(&path, "migrate", &first, false).expect("open");
        let run = journal.run_id().to_owned();
        journal.record(record("snapshot", "done")).expect("record");
        drop(journal);
        let text = std::fs::read_to_string(&path).expect("journal");
        assert!(
            !text.contains("./m.dump"),
            "arguments are kept as digests: {text}"
        );

        let other = args(&[("backup", "./other.dump"), ("extra", "1")]);
        let error = Journal::open_run(&path, "migrate", &other, false).expect_err("refused");
        let message = error.to_string();
        assert!(
            message.contains("backup (changed), to (removed)")
                && !message.contains("extra")
                && message.contains("--restart"),
            "{message}"
        );
        // A run control may change: the run resumes.
        let resumed = args(&[("backup", "./m.dump"), ("to", "new"), ("force", "true")]);
        let (journal, forgotten) =
            Journal::open_run(&path, "migrate", &resumed, false).expect("resumes");
        assert_eq!(forgotten, 0);
        assert!(journal.done("snapshot").is_some());
        drop(journal);
        // --restart: the steps go, the run's identity stays.
        let (journal, forgotten) =
            Journal::open_run(&path, "migrate", &other, true).expect("restarts");
        assert_eq!(forgotten, 1);
        assert!(journal.steps().is_empty());
        assert_eq!(journal.run_id(), run);
        drop(journal);
        let (journal, _) = Journal::open_run(&path, "migrate", &other, false).expect("same args");
        assert!(journal.steps().is_empty());
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
