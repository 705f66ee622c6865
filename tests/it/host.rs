//! The host through the CLI: resolution order, error rendering, exit codes, dry-run plans,
//! the journal, `parallel`, cancellation with `defer`, limits and `docs`.

use std::time::{Duration, Instant};

use crate::support::{ankus_bin, ankus_in, temp_dir, write};

#[test]
fn import_resolves_override_dir_then_cwd_stdlib_then_embedded() {
    let dir = temp_dir();
    let script = write(
        dir.path(),
        "s.rhai",
        "import \"report\" as r;\nprint(r::bytes(2048));\n",
    );
    let script = script.to_str().expect("utf-8");
    let embedded = ankus_in(dir.path(), &["run", script]);
    assert_eq!(embedded.stdout, "2.0 KiB\n", "{embedded:?}");

    write(
        dir.path(),
        "stdlib/report.rhai",
        "fn bytes(n) { \"cwd copy\" }\n",
    );
    let cwd = ankus_in(dir.path(), &["run", script]);
    assert_eq!(cwd.stdout, "cwd copy\n", "{cwd:?}");

    let custom = write(
        dir.path(),
        "custom/stdlib/report.rhai",
        "fn bytes(n) { \"override dir\" }\n",
    );
    let custom_root = custom.parent().and_then(|p| p.parent()).expect("root");
    let overridden = ankus_in(
        dir.path(),
        &[
            "run",
            script,
            "--scripts",
            custom_root.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(overridden.stdout, "override dir\n", "{overridden:?}");
}

#[test]
fn script_name_resolves_override_dir_before_cwd_scripts() {
    let dir = temp_dir();
    write(
        dir.path(),
        "scripts/mine.rhai",
        "print(\"from ./scripts\");\n",
    );
    let from_cwd = ankus_in(dir.path(), &["run", "mine"]);
    assert_eq!(from_cwd.stdout, "from ./scripts\n", "{from_cwd:?}");
    write(
        dir.path(),
        "other/scripts/mine.rhai",
        "print(\"from --scripts\");\n",
    );
    let from_override = ankus_in(dir.path(), &["run", "mine", "--scripts", "other"]);
    assert_eq!(
        from_override.stdout, "from --scripts\n",
        "{from_override:?}"
    );
}

#[test]
fn runtime_error_shows_file_line_column_caret_and_exits_1() {
    let dir = temp_dir();
    write(
        dir.path(),
        "bad.rhai",
        "fn inner(x) {\n    x.no_such_method()\n}\nlet v = 1;\ninner(v);\n",
    );
    let out = ankus_in(dir.path(), &["run", "./bad.rhai"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("error: Function not found: no_such_method"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--> ./bad.rhai:2:7"), "{}", out.stderr);
    assert!(
        out.stderr.contains("2 |     x.no_such_method()"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("  |       ^"), "{}", out.stderr);
    assert!(
        out.stderr.contains("in call to 'inner' at ./bad.rhai:5:1"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn syntax_error_names_line_and_column_and_exits_1() {
    let dir = temp_dir();
    write(dir.path(), "syntax.rhai", "let a = 1;\nlet b = (a + ;\n");
    let out = ankus_in(dir.path(), &["run", "./syntax.rhai"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.starts_with("error: syntax error:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("--> ./syntax.rhai:2:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("2 | let b = (a + ;"), "{}", out.stderr);
}

#[test]
fn usage_errors_exit_2_with_one_clear_message() {
    let dir = temp_dir();
    let unknown = ankus_in(dir.path(), &["run", "no-such-script"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no script named 'no-such-script'"),
        "{}",
        unknown.stderr
    );

    write(dir.path(), "ok.rhai", "print(arg(\"from\"));\n");
    let malformed = ankus_in(dir.path(), &["run", "./ok.rhai", "-a", "from"]);
    assert_eq!(malformed.code, 2, "{malformed:?}");
    assert!(
        malformed.stderr.contains("'from' is not KEY=VALUE"),
        "{}",
        malformed.stderr
    );

    let missing = ankus_in(dir.path(), &["run", "./ok.rhai"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing
            .stderr
            .contains("missing argument 'from': pass -a from=VALUE"),
        "{}",
        missing.stderr
    );

    std::fs::write(dir.path().join("latin1.rhai"), b"print(\"caf\xe9\");\n").expect("write");
    let binary = ankus_in(dir.path(), &["run", "./latin1.rhai"]);
    assert_eq!(binary.code, 2, "{binary:?}");
    assert!(
        binary
            .stderr
            .contains("is not UTF-8 text (invalid byte at offset 10)"),
        "{}",
        binary.stderr
    );
    for output in [&unknown, &malformed, &missing, &binary] {
        assert!(!output.stderr.contains("panicked"), "{}", output.stderr);
    }
}

#[test]
fn dry_run_records_a_plan_and_changes_nothing() {
    let dir = temp_dir();
    write(
        dir.path(),
        "w.rhai",
        "fs::write_text(\"out.txt\", \"hello\");\nprint(is_dry_run());\n",
    );
    let text = ankus_in(dir.path(), &["run", "./w.rhai", "--dry-run"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(!dir.path().join("out.txt").exists());
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines[0], "true");
    assert_eq!(lines[1], "plan: 1 change(s) would be made");
    assert!(
        lines[3].starts_with("1  fs       write_text"),
        "{}",
        text.stdout
    );
    assert!(lines[3].ends_with("{\"bytes\":5}"), "{}", text.stdout);

    let json = ankus_in(
        dir.path(),
        &["run", "./w.rhai", "--dry-run", "--output", "json"],
    );
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("json stdout");
    assert_eq!(document["ok"], true);
    assert_eq!(document["dry_run"], true);
    assert_eq!(document["plan"][0]["binding"], "fs");
    assert_eq!(document["plan"][0]["action"], "write_text");
    assert_eq!(document["plan"][0]["details"]["bytes"], 5);
    assert!(!dir.path().join("out.txt").exists());

    let real = ankus_in(dir.path(), &["run", "./w.rhai"]);
    assert_eq!(real.stdout, "false\n", "{real:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).expect("written"),
        "hello"
    );
}

#[test]
fn rerun_with_the_same_journal_skips_finished_steps() {
    let dir = temp_dir();
    write(
        dir.path(),
        "steps.rhai",
        r#"
let a = step("first", || { print("first ran"); 41 });
let b = step("second", || {
    if !fs::exists("go") { throw "not yet"; }
    print("second ran");
    a + 1
});
print(`result ${b}`);
"#,
    );
    let first = ankus_in(dir.path(), &["run", "./steps.rhai"]);
    assert_eq!(first.code, 1, "{first:?}");
    assert_eq!(first.stdout, "first ran\n");
    assert!(
        first.stderr.contains("step second: failed"),
        "{}",
        first.stderr
    );
    let journal = dir.path().join(".ankus/steps.journal.json");
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&journal).expect("journal")).expect("json");
    assert_eq!(recorded["steps"][0]["name"], "first");
    assert_eq!(recorded["steps"][0]["status"], "done");
    assert_eq!(recorded["steps"][1]["status"], "failed");

    std::fs::write(dir.path().join("go"), "").expect("write");
    let second = ankus_in(dir.path(), &["run", "./steps.rhai"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(second.stdout, "second ran\nresult 42\n");
    assert!(
        second
            .stderr
            .contains("step first: already done (journal), skipping"),
        "{}",
        second.stderr
    );

    let third = ankus_in(dir.path(), &["run", "./steps.rhai"]);
    assert_eq!(
        third.stdout, "first ran\nsecond ran\nresult 42\n",
        "a finished journal starts fresh"
    );
}

#[test]
fn parallel_returns_results_in_order_and_raises_the_first_failure() {
    let dir = temp_dir();
    write(
        dir.path(),
        "par.rhai",
        r#"
let started = now_ms();
let r = parallel([|| { sleep(0.3); "slow" }, || "fast", || { sleep(0.1); 3 }]);
print(r);
try {
    parallel([|| 1, || { sleep(0.1); throw "second broke" }, || throw "third broke"]);
} catch (e) {
    print(`caught: ${e}`);
}
"#,
    );
    let out = ankus_in(dir.path(), &["run", "./par.rhai"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "[\"slow\", \"fast\", 3]\ncaught: second broke\n"
    );
}

#[test]
fn ctrl_c_stops_the_script_runs_defers_and_exits_130() {
    let dir = temp_dir();
    write(
        dir.path(),
        "loop.rhai",
        r#"
defer(|| fs::write_text("first-deferred.txt", "ran"));
defer(|| fs::write_text("second-deferred.txt", "ran"));
fs::write_text("started.txt", "");
let n = 0;
loop { n += 1; }
"#,
    );
    let child = std::process::Command::new(ankus_bin())
        .args(["run", "./loop.rhai"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.path().join("started.txt").exists() {
        assert!(Instant::now() < deadline, "script never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("error: interrupted"), "{stderr}");
    assert!(dir.path().join("first-deferred.txt").exists());
    assert!(dir.path().join("second-deferred.txt").exists());
}

#[test]
fn runaway_loop_stops_at_the_operation_limit() {
    let dir = temp_dir();
    write(dir.path(), "spin.rhai", "let n = 0;\nloop { n += 1; }\n");
    let out = ankus_in(
        dir.path(),
        &["run", "./spin.rhai", "--max-operations", "100000"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("too many operations"), "{}", out.stderr);
    assert!(out.stderr.contains("--> ./spin.rhai:2:"), "{}", out.stderr);
}

#[test]
fn deep_recursion_stops_with_a_clear_message() {
    let dir = temp_dir();
    write(
        dir.path(),
        "deep.rhai",
        "fn down(n) { down(n + 1) }\ndown(0);\n",
    );
    let out = ankus_in(dir.path(), &["run", "./deep.rhai"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("too many nested function calls"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn confirm_without_a_terminal_fails_cleanly_unless_yes() {
    let dir = temp_dir();
    write(dir.path(), "ask.rhai", "print(confirm(\"proceed?\"));\n");
    let refused = ankus_in(dir.path(), &["run", "./ask.rhai"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("cannot ask 'proceed?': stdin is not a terminal; pass --yes"),
        "{}",
        refused.stderr
    );
    let agreed = ankus_in(dir.path(), &["run", "./ask.rhai", "--yes"]);
    assert_eq!(agreed.stdout, "true\n", "{agreed:?}");
}

#[test]
fn fs_outside_allowed_directories_is_refused() {
    let dir = temp_dir();
    write(
        dir.path(),
        "peek.rhai",
        "fs::read_text(\"/etc/hostname\");\n",
    );
    let out = ankus_in(dir.path(), &["run", "./peek.rhai"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("path /etc/hostname is outside the directories scripts may use"),
        "{}",
        out.stderr
    );
}

#[test]
fn exec_is_disabled_unless_allowed() {
    let dir = temp_dir();
    write(
        dir.path(),
        "x.rhai",
        "let r = exec(\"echo\", [\"hi\"]);\nprint(r.stdout);\n",
    );
    let refused = ankus_in(dir.path(), &["run", "./x.rhai"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("exec of 'echo' is disabled"),
        "{}",
        refused.stderr
    );
    let allowed = ankus_in(dir.path(), &["run", "./x.rhai", "--allow-exec"]);
    assert_eq!(allowed.stdout, "hi\n", "{allowed:?}");
}

#[test]
fn binding_errors_are_catchable_with_kind_and_message() {
    let dir = temp_dir();
    write(
        dir.path(),
        "catch.rhai",
        "try { json::parse(\"{oops\"); } catch (e) { print(e.kind); print(e.message); }\n",
    );
    let out = ankus_in(dir.path(), &["run", "./catch.rhai"]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "invalid");
    assert!(
        lines[1].starts_with("invalid JSON at line 1 column 2"),
        "{}",
        out.stdout
    );
}

#[test]
fn docs_document_every_registered_function() {
    let dir = temp_dir();
    let json = ankus_in(dir.path(), &["docs", "--format", "json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let metadata: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let mut names = Vec::new();
    let mut undocumented = Vec::new();
    collect(&metadata, "", &mut names, &mut undocumented);
    for expected in [
        "parallel",
        "step",
        "defer",
        "confirm",
        "json::parse",
        "fs::write_text",
        "arg",
        "sleep",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing from docs"
        );
    }
    assert!(
        undocumented.is_empty(),
        "functions without a doc comment: {undocumented:?}"
    );

    let markdown = ankus_in(dir.path(), &["docs"]);
    for name in &names {
        let short = name.rsplit("::").next().expect("name");
        assert!(
            markdown.stdout.contains(short),
            "{name} missing from markdown docs"
        );
    }
    assert!(markdown.stdout.contains("```rhai"), "examples are shown");
}

fn collect(
    node: &serde_json::Value,
    prefix: &str,
    names: &mut Vec<String>,
    undocumented: &mut Vec<String>,
) {
    for function in node["functions"].as_array().into_iter().flatten() {
        let name = function["name"].as_str().expect("name");
        if name.contains('$') || function["access"] == "private" {
            continue;
        }
        let qualified = format!("{prefix}{name}");
        let documented = function["docComments"]
            .as_array()
            .is_some_and(|docs| !docs.is_empty());
        if !documented && !["to_string", "to_debug"].contains(&name) {
            undocumented.push(qualified.clone());
        }
        names.push(qualified);
    }
    for (module, child) in node["modules"].as_object().into_iter().flatten() {
        collect(child, &format!("{prefix}{module}::"), names, undocumented);
    }
}

#[test]
fn completions_and_version_work() {
    let dir = temp_dir();
    let version = ankus_in(dir.path(), &["--version"]);
    assert_eq!(
        version.stdout,
        format!("ankus {}\n", env!("CARGO_PKG_VERSION"))
    );
    let bash = ankus_in(dir.path(), &["completions", "bash"]);
    assert_eq!(bash.code, 0);
    assert!(
        bash.stdout.contains("_ankus()"),
        "{}",
        &bash.stdout[..200.min(bash.stdout.len())]
    );
}

/// Regression (#19): `-v` promised debug logs, but the tracing events of ankus and its
/// clients went nowhere (no subscriber was installed) and `RUST_LOG` did nothing; `-o` was not
/// a short form of `--output`.
#[test]
fn dash_v_and_rust_log_show_the_clients_tracing_events_and_dash_o_is_output() {
    let work = temp_dir();
    let sandbox = crate::flows::SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", "sample", "--no-new"],
    );
    let script = write(
        work.path(),
        "repos.rhai",
        "pachd::connect(\"old\").repos().len()",
    );
    let script = script.to_str().expect("utf-8");
    let plain = sandbox.run(work.path(), &["run", script]);
    assert_eq!(plain.code, 0, "{plain:?}");
    assert!(!plain.stderr.contains("pachd call"), "{}", plain.stderr);

    let verbose = sandbox.run(work.path(), &["-v", "run", script]);
    assert_eq!(verbose.code, 0, "{verbose:?}");
    assert!(
        verbose.stderr.contains("pachd call") && verbose.stderr.contains("list repos"),
        "{}",
        verbose.stderr
    );

    let filtered: crate::support::Outcome = sandbox
        .ankus(work.path(), &["run", script])
        .env("RUST_LOG", "ankus::pachd=debug")
        .output()
        .expect("ankus runs")
        .into();
    assert_eq!(filtered.code, 0, "{filtered:?}");
    assert!(
        filtered.stderr.contains("pachd call"),
        "{}",
        filtered.stderr
    );

    let json = sandbox.run(work.path(), &["-o", "json", "run", script]);
    assert_eq!(json.code, 0, "{json:?}");
    let value: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert!(value["result"].as_i64() > Some(0), "{value}");
}

/// Regression (#19): `--output json` was accepted everywhere and ignored by `scripts`, `docs`
/// and `sandbox`, which printed text; commands that cannot print JSON must refuse it.
#[test]
fn every_command_prints_json_with_output_json_or_refuses_it() {
    let dir = temp_dir();
    let listed = ankus_in(dir.path(), &["-o", "json", "scripts", "list"]);
    assert_eq!(listed.code, 0, "{listed:?}");
    let entries: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    let entries = entries.as_array().expect("array");
    assert!(
        entries
            .iter()
            .any(|e| e["name"] == "migrate" && e["kind"] == "script")
            && entries
                .iter()
                .any(|e| e["name"] == "pipelines" && e["kind"] == "stdlib"),
        "{entries:?}"
    );
    let shown = ankus_in(
        dir.path(),
        &["scripts", "show", "migrate", "--output", "json"],
    );
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).expect("json");
    assert!(
        shown["text"]
            .as_str()
            .is_some_and(|text| text.starts_with("//! Migrate")),
        "{shown}"
    );
    let ejected = ankus_in(dir.path(), &["-o", "json", "scripts", "eject", "mine"]);
    let ejected: serde_json::Value = serde_json::from_str(&ejected.stdout).expect("json");
    assert!(
        ejected["written"].as_array().is_some_and(|w| !w.is_empty()),
        "{ejected}"
    );
    let docs = ankus_in(dir.path(), &["-o", "json", "docs"]);
    let docs: serde_json::Value = serde_json::from_str(&docs.stdout).expect("json");
    assert!(docs["functions"].as_array().is_some_and(|f| !f.is_empty()));
    for args in [
        &["-o", "json", "completions", "bash"][..],
        &["-o", "json", "repl"],
    ] {
        let refused = ankus_in(dir.path(), args);
        assert_eq!(refused.code, 2, "{args:?}: {refused:?}");
        assert!(
            refused
                .stderr
                .contains("cannot print JSON; drop --output json")
                && refused.stdout.is_empty(),
            "{args:?}: {refused:?}"
        );
    }
    // The sandbox's ready line is one JSON document.
    let mut sandbox = std::process::Command::new(ankus_bin())
        .args(["-o", "json", "sandbox", "--no-new", "--dir"])
        .arg(dir.path().join("sandbox"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sandbox starts");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(sandbox.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("ready line");
    let _ = sandbox.kill();
    let _ = sandbox.wait();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("json ready line");
    assert_eq!(ready["ready"], true, "{ready}");
    assert!(ready["kube_server"].is_string(), "{ready}");
}
