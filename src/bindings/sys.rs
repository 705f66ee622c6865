//! The `sys` package: logging, arguments, confirmation, time, environment, concurrency
//! (`parallel`), journaled steps (`step`) and cleanups (`defer`), plus the `json::` and `fs::`
//! modules.

use rhai::plugin::*;

/// Global functions: logging, arguments, time, concurrency, steps and cleanups.
#[export_module]
pub mod sys_api {
    use std::time::{Duration, Instant};

    use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext};

    use crate::host::context::HostCtx;
    use crate::host::convert::{from_json, to_json};
    use crate::host::error::{BindingResult, script_fail};
    use crate::host::journal::StepRecord;
    use crate::kind::Kind;

    /// Logs a line to stderr (info level).
    ///
    /// ```rhai
    /// log("starting");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn log(call: NativeCallContext, message: &str) -> BindingResult<()> {
        HostCtx::of(&call)?.info(message);
        Ok(())
    }

    /// Logs an informational line to stderr.
    ///
    /// ```rhai
    /// info(`stopping ${n} pipelines`);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn info(call: NativeCallContext, message: &str) -> BindingResult<()> {
        HostCtx::of(&call)?.info(message);
        Ok(())
    }

    /// Logs a warning to stderr.
    ///
    /// ```rhai
    /// warn("target cluster is not empty");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn warn(call: NativeCallContext, message: &str) -> BindingResult<()> {
        HostCtx::of(&call)?.warn(message);
        Ok(())
    }

    /// Logs an error line to stderr (shown even with `-q`); does not stop the script.
    ///
    /// ```rhai
    /// error("restore failed; see above");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn error(call: NativeCallContext, message: &str) -> BindingResult<()> {
        HostCtx::of(&call)?.error(message);
        Ok(())
    }

    /// Sleeps for `seconds` (fractions allowed); Ctrl-C interrupts it.
    ///
    /// ```rhai
    /// sleep(0.5);
    /// ```
    #[rhai_fn(return_raw, volatile, name = "sleep")]
    pub fn sleep_float(call: NativeCallContext, seconds: rhai::FLOAT) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        if !(0.0..=86_400.0).contains(&seconds) {
            return Err(script_fail(
                Kind::Invalid,
                format!("sleep takes 0 to 86400 seconds, not {seconds}"),
                call.call_position(),
            ));
        }
        host.block_on_for(
            async move { tokio::time::sleep(Duration::from_secs_f64(seconds)).await },
            None,
            call.call_position(),
        )
    }

    /// Sleeps for whole `seconds`; Ctrl-C interrupts it.
    ///
    /// ```rhai
    /// sleep(2);
    /// ```
    #[rhai_fn(return_raw, volatile, name = "sleep")]
    pub fn sleep_int(call: NativeCallContext, seconds: rhai::INT) -> BindingResult<()> {
        sleep_float(call, seconds as rhai::FLOAT)
    }

    /// The value of an environment variable, or `()` when it is not set.
    ///
    /// ```rhai
    /// let home = env("HOME");
    /// ```
    #[rhai_fn(volatile)]
    pub fn env(name: &str) -> Dynamic {
        std::env::var(name)
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT)
    }

    /// The current time, RFC 3339 in UTC.
    ///
    /// ```rhai
    /// let started = now();
    /// ```
    #[rhai_fn(volatile)]
    pub fn now() -> String {
        jiff::Timestamp::now().to_string()
    }

    /// Milliseconds since the Unix epoch.
    ///
    /// ```rhai
    /// let t0 = now_ms();
    /// ```
    #[rhai_fn(volatile)]
    pub fn now_ms() -> rhai::INT {
        jiff::Timestamp::now().as_millisecond()
    }

    /// The `-a KEY=VALUE` arguments of this run, as a map of strings.
    ///
    /// ```rhai
    /// for k in args().keys() { print(k); }
    /// ```
    #[rhai_fn(return_raw, volatile, name = "args")]
    pub fn script_args(call: NativeCallContext) -> BindingResult<Map> {
        Ok(HostCtx::of(&call)?
            .args()
            .iter()
            .map(|(key, value)| (key.as_str().into(), value.clone().into()))
            .collect())
    }

    /// One `-a` argument; fails with a usage error naming it when it was not given.
    ///
    /// ```rhai
    /// let from = arg("from");
    /// ```
    #[rhai_fn(return_raw, volatile, name = "arg")]
    pub fn arg_required(call: NativeCallContext, name: &str) -> BindingResult<String> {
        HostCtx::of(&call)?
            .args()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                script_fail(
                    Kind::Usage,
                    format!("missing argument '{name}': pass -a {name}=VALUE"),
                    call.call_position(),
                )
            })
    }

    /// One `-a` argument, or `default` when it was not given. A boolean or integer default
    /// makes the value parsed as that type (with an error naming the argument if it does not
    /// parse).
    ///
    /// ```rhai
    /// let objects = arg("objects", false);
    /// let width = arg("width", 8);
    /// ```
    #[rhai_fn(return_raw, volatile, name = "arg")]
    pub fn arg_default(
        call: NativeCallContext,
        name: &str,
        default: Dynamic,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let Some(text) = host.args().get(name) else {
            return Ok(default);
        };
        let bad = |expected: &str| {
            script_fail(
                Kind::Usage,
                format!("argument '{name}' must be {expected}, not '{text}'"),
                call.call_position(),
            )
        };
        if default.is_bool() {
            return match text.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => Ok(true.into()),
                "false" | "no" | "0" | "off" => Ok(false.into()),
                _ => Err(bad("true or false")),
            };
        }
        if default.is_int() {
            return text
                .parse::<rhai::INT>()
                .map(Dynamic::from)
                .map_err(|_| bad("an integer"));
        }
        Ok(text.clone().into())
    }

    /// Asks the user a yes/no question on the terminal. `--yes` answers yes; without a terminal
    /// (and without `--yes`) it fails with a usage error instead of hanging.
    ///
    /// ```rhai
    /// if confirm("scale the old pachd to zero?") { print("ok"); }
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn confirm(call: NativeCallContext, prompt: &str) -> BindingResult<bool> {
        let host = HostCtx::of(&call)?;
        if host.options().assume_yes {
            host.info(&format!("{prompt} [y/N] yes (--yes)"));
            return Ok(true);
        }
        if !host.options().interactive {
            return Err(script_fail(
                Kind::Usage,
                format!("cannot ask '{prompt}': stdin is not a terminal; pass --yes to agree"),
                call.call_position(),
            ));
        }
        eprint!("{prompt} [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).map_err(|error| {
            script_fail(
                Kind::Io,
                format!("failed to read the answer: {error}"),
                call.call_position(),
            )
        })?;
        Ok(matches!(
            answer.trim().to_ascii_lowercase().as_str(),
            "y" | "yes"
        ))
    }

    /// Runs closures at the same time, each on its own thread, and returns their results in
    /// the order given. If any fails, the first failure (in order) is raised after all finish.
    ///
    /// ```rhai
    /// let r = parallel([|| 1 + 1, || "two"]);   // [2, "two"]
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parallel(call: NativeCallContext, closures: Array) -> BindingResult<Array> {
        let mut functions = Vec::with_capacity(closures.len());
        for (index, item) in closures.into_iter().enumerate() {
            let function = item.try_cast::<FnPtr>().ok_or_else(|| {
                script_fail(
                    Kind::Invalid,
                    format!("parallel takes an array of closures; item {index} is not one"),
                    call.call_position(),
                )
            })?;
            functions.push(function);
        }
        let results: Vec<BindingResult<Dynamic>> = std::thread::scope(|scope| {
            let handles: Vec<_> = functions
                .iter()
                .map(|function| {
                    let call = &call;
                    std::thread::Builder::new()
                        .name("ankus-parallel".into())
                        .stack_size(crate::host::runtime::SCRIPT_STACK)
                        .spawn_scoped(scope, move || {
                            function.call_within_context::<Dynamic>(call, ())
                        })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| match handle {
                    Ok(joinable) => joinable.join().unwrap_or_else(|_| {
                        Err(script_fail(
                            Kind::Failed,
                            "a parallel branch panicked",
                            call.call_position(),
                        ))
                    }),
                    Err(error) => Err(script_fail(
                        Kind::Failed,
                        format!("failed to start a thread: {error}"),
                        call.call_position(),
                    )),
                })
                .collect()
        });
        results.into_iter().collect()
    }

    /// Runs `body` as a journaled step. A step that finished in an earlier run of the same
    /// script (same journal) is skipped and returns the result it had then.
    ///
    /// ```rhai
    /// let heads = step("checkpoint", || #{ left: "abc" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn step(call: NativeCallContext, name: &str, body: FnPtr) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let recorded = host.with_journal(|journal| {
            journal.and_then(|journal| journal.done(name).map(|record| record.result.clone()))
        });
        if let Some(result) = recorded {
            host.info(&format!("step {name}: already done (journal), skipping"));
            return Ok(from_json(&result));
        }
        host.info(&format!("step {name}: starting"));
        let started = Instant::now();
        let outcome = body.call_within_context::<Dynamic>(&call, ());
        let seconds = started.elapsed().as_secs_f64();
        if host.is_dry_run() {
            return outcome;
        }
        let (status, result) = match &outcome {
            Ok(value) => ("done", to_json(Some(&call), value)),
            // A failure that says what it left behind (a partial restore) keeps that in the
            // journal, so a later run or the user can clean up exactly that.
            Err(error) => {
                match crate::host::error::HostError::find(error).and_then(|found| found.details) {
                    Some(details) => (
                        "failed",
                        serde_json::json!({ "error": error.to_string(), "details": details }),
                    ),
                    None => ("failed", serde_json::Value::String(error.to_string())),
                }
            }
        };
        let record = StepRecord {
            name: name.to_owned(),
            status: status.to_owned(),
            result,
            seconds,
            ended_at: jiff::Timestamp::now().to_string(),
        };
        let saved = host.with_journal(|journal| journal.map(|journal| journal.record(record)));
        if let Some(Err(error)) = saved {
            host.warn(&format!("step {name}: {error:#}"));
        }
        match &outcome {
            Ok(_) => host.info(&format!("step {name}: done in {seconds:.2}s")),
            Err(_) => host.error(&format!("step {name}: failed after {seconds:.2}s")),
        }
        outcome
    }

    /// Forgets a finished step, so the next run of this script does it again (used when a
    /// later failure undid what the step did, e.g. a quiesce that was reverted).
    ///
    /// ```rhai
    /// forget("quiesce");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn forget(call: NativeCallContext, name: &str) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        if host.is_dry_run() {
            return Ok(());
        }
        let outcome = host.with_journal(|journal| journal.map(|journal| journal.forget(name)));
        if let Some(Err(error)) = outcome {
            host.warn(&crate::kind::chain_text(&error));
        }
        Ok(())
    }

    /// Whether step `name` finished in this run or an earlier attempt of it (same journal).
    ///
    /// ```rhai
    /// if step_done("quiesce") { print("inside the window"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn step_done(call: NativeCallContext, name: &str) -> BindingResult<bool> {
        let host = HostCtx::of(&call)?;
        Ok(
            host.with_journal(|journal| {
                journal.is_some_and(|journal| journal.done(name).is_some())
            }),
        )
    }

    /// Write-ahead: records in the journal what the run is about to do (under `key`), and saves
    /// it before returning, so a successor of a run killed mid-way knows exactly what to undo.
    /// Fails when it cannot be saved: do not act then. Does nothing in a dry run or without a
    /// journal.
    ///
    /// ```rhai
    /// intend("pause", #{ pipelines: ["edges"] });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn intend(call: NativeCallContext, key: &str, value: Dynamic) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        if host.is_dry_run() {
            return Ok(());
        }
        let value = to_json(Some(&call), &value);
        let saved = host.with_journal(|journal| journal.map(|journal| journal.intend(key, value)));
        match saved {
            Some(Err(error)) => Err(script_fail(
                Kind::Io,
                format!(
                    "record what the run is about to do ({key}): {}",
                    crate::kind::chain_text(&error)
                ),
                call.call_position(),
            )),
            _ => Ok(()),
        }
    }

    /// What `intend(key, ...)` recorded in this run or an earlier attempt of it (same
    /// journal), or `()`.
    ///
    /// ```rhai
    /// let left = intended("pause");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn intended(call: NativeCallContext, key: &str) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let value =
            host.with_journal(|journal| journal.and_then(|journal| journal.intended(key).cloned()));
        Ok(value
            .map(|value| from_json(&value))
            .unwrap_or(Dynamic::UNIT))
    }

    /// Drops what `intend(key, ...)` recorded: it is done, or undone.
    ///
    /// ```rhai
    /// settle("pause");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn settle(call: NativeCallContext, key: &str) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        if host.is_dry_run() {
            return Ok(());
        }
        let outcome = host.with_journal(|journal| journal.map(|journal| journal.settle(key)));
        if let Some(Err(error)) = outcome {
            host.warn(&crate::kind::chain_text(&error));
        }
        Ok(())
    }

    /// This run as it names itself in the marks it leaves on a cluster:
    /// `#{ run, script, host, pid, journal, started_at }`. `run` is the same for every re-run
    /// of one journal until the run finishes.
    ///
    /// ```rhai
    /// let me = run_holder();
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn run_holder(call: NativeCallContext) -> BindingResult<Dynamic> {
        Ok(from_json(&HostCtx::of(&call)?.holder()))
    }

    /// How a holder record (from `run_holder()`, found on a cluster) stands to this run:
    /// `"mine"` (this run, or an earlier attempt of it), `"alive"` (another live process on
    /// this machine), `"dead"` (its process on this machine is gone) or `"elsewhere"`
    /// (another machine: cannot be told).
    ///
    /// ```rhai
    /// if holder_standing(record.holder) == "alive" { throw "another run holds it"; }
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn holder_standing(call: NativeCallContext, holder: Dynamic) -> BindingResult<String> {
        let host = HostCtx::of(&call)?;
        let holder = to_json(Some(&call), &holder);
        Ok(crate::holder::standing(&holder, &host.run_id())
            .as_str()
            .to_owned())
    }

    /// A holder record in words, for messages.
    ///
    /// ```rhai
    /// throw `held by ${describe_holder(record.holder)}`;
    /// ```
    pub fn describe_holder(call: NativeCallContext, holder: Dynamic) -> String {
        crate::holder::describe(&to_json(Some(&call), &holder))
    }

    /// A rehearsal point: with `-a hold_at=POINT` the run waits here (`-a hold_seconds`,
    /// default 30) so it can be interrupted or killed at exactly this point; otherwise returns
    /// at once.
    ///
    /// ```rhai
    /// hold("quiesce:before_swap");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn hold(call: NativeCallContext, point: &str) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        if host.hold_at().is_none() {
            return Ok(());
        }
        let waiting = host.clone();
        let point = point.to_owned();
        host.block_on_for(
            async move { waiting.hold(&point).await },
            None,
            call.call_position(),
        )
    }

    /// Records an entry in the dry-run plan, for a change a dry run cannot reach through a
    /// binding (e.g. a restore into a cluster the dry run did not deploy). Does nothing when
    /// the run is real.
    ///
    /// ```rhai
    /// if is_dry_run() { plan("pachd", "restore", "new", #{ from: "backup.dump" }); }
    /// ```
    #[rhai_fn(return_raw, name = "plan")]
    pub fn plan_entry(
        call: NativeCallContext,
        binding: &str,
        action: &str,
        target: &str,
        details: Dynamic,
    ) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        if host.is_dry_run() {
            let entry = crate::host::plan::PlanEntry::new(binding, action, target)
                .with_details(to_json(Some(&call), &details));
            host.may_change(entry);
        }
        Ok(())
    }

    /// A fresh random token (32 hex characters), e.g. a root token for a restore.
    ///
    /// ```rhai
    /// let token = random_token();
    /// ```
    #[rhai_fn(volatile)]
    pub fn random_token() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Registers a cleanup that runs when the run ends, whether it succeeded, failed or was
    /// interrupted with Ctrl-C. Cleanups run most recent first.
    ///
    /// ```rhai
    /// defer(|| print("cleaning up"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn defer(call: NativeCallContext, cleanup: FnPtr) -> BindingResult<()> {
        HostCtx::of(&call)?.push_defer(cleanup);
        Ok(())
    }

    /// Whether this run only records what it would change (`--dry-run`).
    ///
    /// ```rhai
    /// if is_dry_run() { print("rehearsal"); }
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn is_dry_run(call: NativeCallContext) -> BindingResult<bool> {
        Ok(HostCtx::of(&call)?.is_dry_run())
    }

    /// Runs a program with arguments and returns `#{ code, stdout, stderr }`. Disabled unless
    /// ankus was started with `--allow-exec`; recorded in the plan on a dry run.
    ///
    /// ```rhai
    /// let r = exec("kubectl", ["version", "--client"]);
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn exec(call: NativeCallContext, program: &str, arguments: Array) -> BindingResult<Map> {
        let host = HostCtx::of(&call)?;
        if !host.options().allow_exec {
            return Err(script_fail(
                Kind::PermissionDenied,
                format!(
                    "exec of '{program}' is disabled; start ankus with --allow-exec to run programs"
                ),
                call.call_position(),
            ));
        }
        let arguments: Vec<String> = arguments.iter().map(|item| item.to_string()).collect();
        let entry = crate::host::plan::PlanEntry::new("sys", "exec", program)
            .with_details(serde_json::json!({ "args": arguments }));
        let mut result = Map::new();
        if !host.may_change(entry) {
            result.insert("code".into(), Dynamic::from(0 as rhai::INT));
            result.insert("stdout".into(), "".into());
            result.insert("stderr".into(), "".into());
            return Ok(result);
        }
        let output = host
            .block_on(
                async {
                    tokio::process::Command::new(program)
                        .args(&arguments)
                        .kill_on_drop(true)
                        .output()
                        .await
                },
                call.call_position(),
            )?
            .map_err(|error| {
                script_fail(
                    Kind::Io,
                    format!("failed to run {program}: {error}"),
                    call.call_position(),
                )
            })?;
        result.insert(
            "code".into(),
            Dynamic::from(output.status.code().map(rhai::INT::from).unwrap_or(-1)),
        );
        result.insert(
            "stdout".into(),
            String::from_utf8_lossy(&output.stdout).into_owned().into(),
        );
        result.insert(
            "stderr".into(),
            String::from_utf8_lossy(&output.stderr).into_owned().into(),
        );
        Ok(result)
    }
}

/// `json::` parse and stringify.
#[export_module]
pub mod json_api {
    use rhai::{Dynamic, NativeCallContext};

    use crate::host::convert::{from_json, to_json};
    use crate::host::error::{BindingResult, script_fail};
    use crate::kind::Kind;

    /// Parses JSON text into maps, arrays and scalars.
    ///
    /// ```rhai
    /// let m = json::parse(`{"a": [1, 2]}`);   // #{ a: [1, 2] }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parse(call: NativeCallContext, text: &str) -> BindingResult<Dynamic> {
        serde_json::from_str::<serde_json::Value>(text)
            .map(|value| from_json(&value))
            .map_err(|error| {
                script_fail(
                    Kind::Invalid,
                    format!(
                        "invalid JSON at line {} column {}: {error}",
                        error.line(),
                        error.column()
                    ),
                    call.call_position(),
                )
            })
    }

    /// Serializes a value to compact JSON; typed objects are written as their `to_map()`.
    ///
    /// ```rhai
    /// json::stringify(#{ a: 1 })   // "{\"a\":1}"
    /// ```
    pub fn stringify(call: NativeCallContext, value: Dynamic) -> String {
        to_json(Some(&call), &value).to_string()
    }

    /// Serializes a value to indented JSON.
    ///
    /// ```rhai
    /// print(json::pretty(#{ a: 1 }));
    /// ```
    pub fn pretty(call: NativeCallContext, value: Dynamic) -> String {
        serde_json::to_string_pretty(&to_json(Some(&call), &value)).unwrap_or_default()
    }
}

/// `fs::` file access inside the allowed directories.
#[export_module]
pub mod fs_api {
    use rhai::NativeCallContext;

    use crate::host::context::HostCtx;
    use crate::host::error::{BindingResult, script_fail};
    use crate::host::plan::PlanEntry;
    use crate::kind::Kind;

    /// Reads a UTF-8 text file inside the allowed directories (the working directory and the
    /// temporary directory, plus `--allow-path`).
    ///
    /// ```rhai
    /// let text = fs::read_text("notes.txt");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn read_text(call: NativeCallContext, path: &str) -> BindingResult<String> {
        let host = HostCtx::of(&call)?;
        let resolved = crate::bindings::local_path(&host, path, call.call_position())?;
        crate::host::sources::read_text(&resolved)
            .map_err(|error| crate::host::error::script_error(error, call.call_position()))
    }

    /// Writes a text file atomically (temporary name, fsync, rename) inside the allowed
    /// directories; recorded in the plan on a dry run.
    ///
    /// ```rhai
    /// fs::write_text("report.txt", "ok\n");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_text(call: NativeCallContext, path: &str, text: &str) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        let resolved = crate::bindings::local_path(&host, path, call.call_position())?;
        let entry = PlanEntry::new("fs", "write_text", resolved.display().to_string())
            .with_details(serde_json::json!({ "bytes": text.len() }));
        if !host.may_change(entry) {
            return Ok(());
        }
        if let Some(parent) = resolved.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                script_fail(
                    Kind::Io,
                    format!("failed to create {}: {error}", parent.display()),
                    call.call_position(),
                )
            })?;
        }
        crate::fsutil::write_atomic(&resolved, text.as_bytes()).map_err(|error| {
            script_fail(
                Kind::Io,
                format!("failed to write {path}: {error}"),
                call.call_position(),
            )
        })
    }

    /// Whether a path exists (inside the allowed directories).
    ///
    /// ```rhai
    /// if fs::exists("backup.dump") { print("found"); }
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn exists(call: NativeCallContext, path: &str) -> BindingResult<bool> {
        let host = HostCtx::of(&call)?;
        let resolved = crate::bindings::local_path(&host, path, call.call_position())?;
        Ok(resolved.exists())
    }
}
