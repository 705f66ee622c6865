//! Per-run host state shared by every binding: arguments, dry-run plan, journal, cancellation,
//! deferred cleanups and where output goes. Bindings find it through the engine's tag.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rhai::{Dynamic, FnPtr, NativeCallContext, Position};
use tokio_util::sync::CancellationToken;

use super::error::{BindingResult, HostError, script_fail};
use super::journal::Journal;
use super::plan::{Plan, PlanEntry};
use super::runtime::{self, Interrupted};
use crate::kind::Kind;

/// Where script output goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document on stdout; script prints go to stderr.
    Json,
}

/// How chatty logging is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Verbosity {
    /// Errors only.
    Quiet,
    /// Info, warnings and errors.
    #[default]
    Normal,
    /// Everything, including debug logs.
    Verbose,
}

/// A sink for lines of text (stdout for `print`, stderr for logs); the CLI supplies them.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Which paths `fs::` may touch.
#[derive(Clone, Debug)]
pub struct FsPolicy {
    roots: Vec<PathBuf>,
}

impl FsPolicy {
    /// Allows the given directories and everything below them.
    pub fn new(roots: Vec<PathBuf>) -> Self {
        let roots = roots
            .into_iter()
            .map(|root| std::fs::canonicalize(&root).unwrap_or(root))
            .collect();
        FsPolicy { roots }
    }

    /// The default: the working directory and the system temporary directory.
    pub fn default_roots() -> Self {
        let mut roots = vec![std::env::temp_dir()];
        if let Ok(cwd) = std::env::current_dir() {
            roots.push(cwd);
        }
        FsPolicy::new(roots)
    }

    /// The allowed directories.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Checks a local target a binding is about to read or write: a path, or the directory
    /// or file a `file://` URL names, resolved as [`FsPolicy::check`] resolves paths. Other
    /// URLs and `-` (stdin/stdout) touch no local file and pass as `None`.
    pub fn check_target(&self, target: &str) -> Result<Option<PathBuf>, String> {
        if target == "-" {
            return Ok(None);
        }
        match target.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                // A relative file URL is refused by the store with its own message.
                if !path.starts_with('/') {
                    return Ok(None);
                }
                self.check(path).map(Some)
            }
            Some((scheme, _))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '+') =>
            {
                Ok(None)
            }
            _ => self.check(target).map(Some),
        }
    }

    /// Resolves `path` and checks it lies under an allowed root.
    pub fn check(&self, path: &str) -> Result<PathBuf, String> {
        let raw = PathBuf::from(path);
        let absolute = if raw.is_absolute() {
            raw
        } else {
            std::env::current_dir()
                .map_err(|error| format!("cannot resolve {path}: {error}"))?
                .join(raw)
        };
        // Resolve symlinks and `..` through the longest existing ancestor, so a path cannot
        // escape its root by naming a file that does not exist yet.
        let mut existing = absolute.as_path();
        let mut rest = Vec::new();
        let resolved = loop {
            match std::fs::canonicalize(existing) {
                Ok(real) => break real,
                Err(_) => match (existing.parent(), existing.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name.to_owned());
                        existing = parent;
                    }
                    _ => return Err(format!("cannot resolve {path}")),
                },
            }
        };
        let mut full = resolved;
        for name in rest.into_iter().rev() {
            if name == ".." {
                return Err(format!("path {path} leaves the allowed directories"));
            }
            full.push(name);
        }
        if self.roots.iter().any(|root| full.starts_with(root)) {
            Ok(full)
        } else {
            Err(format!(
                "path {path} is outside the directories scripts may use ({}); pass --allow-path",
                self.roots
                    .iter()
                    .map(|root| root.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// Settings a run starts with.
#[derive(Clone)]
pub struct HostOptions {
    /// `-a KEY=VALUE` values.
    pub args: BTreeMap<String, String>,
    /// Record changes instead of making them.
    pub dry_run: bool,
    /// Answer every confirmation with yes.
    pub assume_yes: bool,
    /// Text or JSON.
    pub output: OutputMode,
    /// Log level.
    pub verbosity: Verbosity,
    /// Where `print` goes.
    pub stdout: Sink,
    /// Where logs go.
    pub stderr: Sink,
    /// Where a secret meant for the user (a generated root token) is shown, once and
    /// unredacted: the terminal's stderr, never a log, plan, journal or JSON document.
    pub reveal: Sink,
    /// Which paths `fs::` may touch.
    pub fs_policy: FsPolicy,
    /// Whether `exec` may run processes.
    pub allow_exec: bool,
    /// Directory searched before the embedded scripts and stdlib.
    pub scripts_dir: Option<PathBuf>,
    /// Whether stdin is a terminal (for `confirm`).
    pub interactive: bool,
    /// Deadline for one remote call.
    pub call_timeout: Duration,
    /// Pre-set pachctl config path for contexts (the sandbox sets it).
    pub pach_config: Option<PathBuf>,
    /// Pre-set kubeconfig path (the sandbox sets it).
    pub kubeconfig: Option<PathBuf>,
    /// What the run's sandbox is (the content of its `sandbox.json`: addresses, bucket URLs,
    /// versions), when the run started one.
    pub sandbox: Option<serde_json::Value>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            args: BTreeMap::new(),
            dry_run: false,
            assume_yes: false,
            output: OutputMode::Text,
            verbosity: Verbosity::Normal,
            stdout: Arc::new(|_| {}),
            stderr: Arc::new(|_| {}),
            reveal: Arc::new(|_| {}),
            fs_policy: FsPolicy::default_roots(),
            allow_exec: false,
            scripts_dir: None,
            interactive: false,
            call_timeout: Duration::from_secs(300),
            pach_config: None,
            kubeconfig: None,
            sandbox: None,
        }
    }
}

/// The shared state of one run (or one REPL session).
pub struct HostCtx {
    options: HostOptions,
    dry_run: AtomicBool,
    plan: Mutex<Plan>,
    cancel: Mutex<CancellationToken>,
    journal: Mutex<Option<Journal>>,
    defers: Mutex<Vec<FnPtr>>,
    /// The run's identity when it has no journal (a dry run, the REPL).
    run_id: String,
    /// The signal that interrupted the run (2 SIGINT, 15 SIGTERM, 1 SIGHUP), if one did.
    signal: std::sync::atomic::AtomicI32,
}

/// The engine tag that carries the context; opaque to scripts.
#[derive(Clone)]
pub struct HostHandle(pub Arc<HostCtx>);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep using it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HostCtx {
    /// A new context from options.
    pub fn new(options: HostOptions) -> Arc<HostCtx> {
        Arc::new(HostCtx {
            dry_run: AtomicBool::new(options.dry_run),
            options,
            plan: Mutex::new(Plan::default()),
            cancel: Mutex::new(CancellationToken::new()),
            journal: Mutex::new(None),
            defers: Mutex::new(Vec::new()),
            run_id: super::journal::new_run_id(),
            signal: std::sync::atomic::AtomicI32::new(0),
        })
    }

    /// The context of the running engine.
    pub fn of(call: &NativeCallContext) -> BindingResult<Arc<HostCtx>> {
        call.tag()
            .and_then(|tag| tag.clone().try_cast::<HostHandle>())
            .map(|handle| handle.0)
            .ok_or_else(|| {
                script_fail(
                    Kind::Failed,
                    "binding called outside an ankus host",
                    call.call_position(),
                )
            })
    }

    /// The options the run started with.
    pub fn options(&self) -> &HostOptions {
        &self.options
    }

    /// The `-a` arguments.
    pub fn args(&self) -> &BTreeMap<String, String> {
        &self.options.args
    }

    /// Whether mutating bindings only record what they would do.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.load(Ordering::SeqCst)
    }

    /// Turns dry-run on or off (the REPL's `:dry-run`).
    pub fn set_dry_run(&self, on: bool) {
        self.dry_run.store(on, Ordering::SeqCst);
    }

    /// The single gate every mutating binding passes: in a dry run it records `entry` and
    /// returns false (do not act); otherwise it logs at debug level and returns true.
    pub fn may_change(&self, entry: PlanEntry) -> bool {
        if self.is_dry_run() {
            self.debug(&format!(
                "dry-run: {} {} {}",
                entry.binding, entry.action, entry.target
            ));
            lock(&self.plan).record(entry);
            false
        } else {
            self.debug(&format!(
                "{} {} {}",
                entry.binding, entry.action, entry.target
            ));
            true
        }
    }

    /// A copy of the plan so far.
    pub fn plan(&self) -> Plan {
        lock(&self.plan).clone()
    }

    /// Forgets the plan so far.
    pub fn clear_plan(&self) {
        lock(&self.plan).clear();
    }

    /// The current cancellation token.
    pub fn cancel_token(&self) -> CancellationToken {
        lock(&self.cancel).clone()
    }

    /// Whether the current token has fired.
    pub fn is_cancelled(&self) -> bool {
        lock(&self.cancel).is_cancelled()
    }

    /// Cancels whatever is running (Ctrl-C).
    pub fn cancel(&self) {
        lock(&self.cancel).cancel();
    }

    /// Cancels the run because signal `number` arrived (remembered for the exit code).
    pub fn cancel_by_signal(&self, number: i32) {
        self.signal.store(number, Ordering::SeqCst);
        self.cancel();
    }

    /// The signal that interrupted the run, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            number => Some(number),
        }
    }

    /// The run's identity: the journal's (the same across re-runs of one run), else this
    /// process's.
    pub fn run_id(&self) -> String {
        self.with_journal(|journal| journal.map(|journal| journal.run_id().to_owned()))
            .unwrap_or_else(|| self.run_id.clone())
    }

    /// This run as it names itself in the marks it leaves on clusters.
    pub fn holder(&self) -> serde_json::Value {
        let (script, journal) = self
            .with_journal(|journal| {
                journal.map(|journal| {
                    let path = std::path::absolute(journal.path())
                        .unwrap_or_else(|_| journal.path().to_path_buf());
                    (
                        journal.script().to_owned(),
                        Some(path.display().to_string()),
                    )
                })
            })
            .unwrap_or_default();
        crate::holder::this_run(&self.run_id(), &script, journal.as_deref())
    }

    /// A rehearsal point: when the run was started with `-a hold_at=POINT`, waits there
    /// (`-a hold_seconds`, default 30) so an operator or a test can interrupt or kill the run
    /// at exactly that point. Returns at once otherwise, or when the run is cancelled.
    pub fn hold_at(&self) -> Option<(String, Duration)> {
        let point = self.options.args.get("hold_at")?.clone();
        let seconds = self
            .options
            .args
            .get("hold_seconds")
            .and_then(|seconds| seconds.parse::<u64>().ok())
            .unwrap_or(30);
        Some((point, Duration::from_secs(seconds)))
    }

    /// Waits at rehearsal point `point` if the run asked to (see [`HostCtx::hold_at`]).
    pub async fn hold(&self, point: &str) {
        if let Some((wanted, seconds)) = self.hold_at()
            && wanted == point
        {
            self.warn(&format!(
                "holding at {point} for {}s (-a hold_at)",
                seconds.as_secs()
            ));
            let token = self.cancel_token();
            tokio::select! {
                _ = tokio::time::sleep(seconds) => {}
                _ = token.cancelled() => {}
            }
        }
    }

    /// Installs a fresh token (before each REPL line, and before deferred cleanups run).
    pub fn reset_cancel(&self) {
        *lock(&self.cancel) = CancellationToken::new();
    }

    /// Blocks on `fut` with the run's cancellation and the default call deadline.
    pub fn block_on<F: std::future::Future>(
        &self,
        fut: F,
        position: Position,
    ) -> BindingResult<F::Output> {
        self.block_on_for(fut, Some(self.options.call_timeout), position)
    }

    /// Blocks on `fut` with the run's cancellation and the given deadline.
    pub fn block_on_for<F: std::future::Future>(
        &self,
        fut: F,
        timeout: Option<Duration>,
        position: Position,
    ) -> BindingResult<F::Output> {
        runtime::block_on(&self.cancel_token(), timeout, fut).map_err(|interrupted| {
            match interrupted {
                Interrupted::Cancelled => Box::new(rhai::EvalAltResult::ErrorTerminated(
                    Dynamic::from("interrupted"),
                    position,
                )),
                Interrupted::Timeout(limit) => HostError::new(
                    Kind::Timeout,
                    format!("timed out after {}s", limit.as_secs_f64()),
                )
                .into_rhai(position),
            }
        })
    }

    /// Installs the journal scripts' `step` calls use.
    pub fn set_journal(&self, journal: Option<Journal>) {
        *lock(&self.journal) = journal;
    }

    /// Runs `f` with the journal, if there is one.
    pub fn with_journal<T>(&self, f: impl FnOnce(Option<&mut Journal>) -> T) -> T {
        let mut guard = lock(&self.journal);
        f(guard.as_mut())
    }

    /// Registers a cleanup to run when the run ends, whatever way it ends.
    pub fn push_defer(&self, cleanup: FnPtr) {
        lock(&self.defers).push(cleanup);
    }

    /// Takes the registered cleanups, most recent first.
    pub fn take_defers(&self) -> Vec<FnPtr> {
        let mut defers = std::mem::take(&mut *lock(&self.defers));
        defers.reverse();
        defers
    }

    /// Writes a script's `print` line.
    pub fn print(&self, text: &str) {
        (self.options.stdout)(text);
    }

    /// Logs at info level to stderr.
    pub fn info(&self, text: &str) {
        if self.options.verbosity >= Verbosity::Normal {
            (self.options.stderr)(text);
        }
    }

    /// Logs a warning to stderr.
    pub fn warn(&self, text: &str) {
        if self.options.verbosity >= Verbosity::Normal {
            (self.options.stderr)(&format!("warning: {text}"));
        }
    }

    /// Logs an error to stderr (shown even with `-q`).
    pub fn error(&self, text: &str) {
        (self.options.stderr)(&format!("error: {text}"));
    }

    /// Shows `text`, which holds a secret the user must keep, once and unredacted.
    pub fn reveal(&self, text: &str) {
        (self.options.reveal)(text);
    }

    /// Logs at debug level (only with `-v`).
    pub fn debug(&self, text: &str) {
        if self.options.verbosity >= Verbosity::Verbose {
            (self.options.stderr)(&format!("debug: {text}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_policy_refuses_paths_outside_roots_and_dotdot_escapes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let policy = FsPolicy::new(vec![dir.path().to_path_buf()]);
        let inside = dir.path().join("a/b.txt");
        assert!(policy.check(inside.to_str().expect("utf-8")).is_ok());
        assert!(policy.check("/etc/passwd").is_err());
        let escape = dir.path().join("missing/../../etc/passwd");
        assert!(policy.check(escape.to_str().expect("utf-8")).is_err());
    }

    #[test]
    fn may_change_records_only_in_dry_run() {
        let ctx = HostCtx::new(HostOptions {
            dry_run: true,
            ..HostOptions::default()
        });
        assert!(!ctx.may_change(PlanEntry::new("pachd", "stop_pipeline", "a")));
        ctx.set_dry_run(false);
        assert!(ctx.may_change(PlanEntry::new("pachd", "stop_pipeline", "b")));
        let plan = ctx.plan();
        assert_eq!(plan.entries().len(), 1);
        assert_eq!(plan.entries()[0].target, "a");
    }
}
