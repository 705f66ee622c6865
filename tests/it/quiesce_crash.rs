//! A migrate stopped inside its quiesce window — kill -9, SIGTERM (how Kubernetes stops a Job)
//! or SIGHUP (a closed terminal) — before and after each pipeline stop and before and after
//! the Service swap: the old cluster must end serving on 30650 with exactly the pipelines that
//! ran before still running (and the one paused before still paused), after the run's own
//! cleanup or after a plain re-run. Also: the cluster-side lease between two runs, and
//! `unblock-ingress` / `resume` finding what to undo from the Service's mark alone.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::flows::SandboxProcess;
use crate::support::temp_dir;

/// The rehearsal points inside the quiesce (`copy` is the pipeline that runs; `sort` is paused
/// before the migration starts).
const POINTS: [&str; 5] = [
    "quiesce:recorded",
    "stop:copy:before",
    "stop:copy:after",
    "quiesce:before_swap",
    "quiesce:after_swap",
];

/// What the operator sees of the old cluster: nodePorts, the quiesce mark, pipeline states.
fn old_cluster(sandbox: &SandboxProcess, work: &Path) -> serde_json::Value {
    sandbox.eval(
        work,
        r#"
let k = kube::connect("old");
let svc = k.get("service", "pachd");
let c = pachd::connect(#{ context: "old", connect_timeout: 5 });
let states = #{};
for p in c.pipelines() { states[p.name] = p.stopped; }
#{ ports: k.service("pachd").node_ports, mark: svc.metadata.annotations?["ankus.io/quiesce"], stopped: states }
"#,
    )
}

/// A sandbox whose pipeline `sort` is paused before the migration, and the state to expect
/// at the end: `copy` running, `sort` paused, 30650 served, no mark.
fn prepared() -> (tempfile::TempDir, SandboxProcess, serde_json::Value) {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", "sample", "--no-new"],
    );
    sandbox.eval(
        work.path(),
        r#"let c = pachd::connect("old"); c.stop_pipeline("sort"); let n = 0; while n < 200 && c.pipeline("sort").state != "paused" { sleep(0.05); n += 1; } n"#,
    );
    let before = old_cluster(&sandbox, work.path());
    assert_eq!(before["stopped"]["sort"], true, "{before}");
    assert_eq!(before["stopped"]["copy"], false, "{before}");
    assert!(before["mark"].is_null(), "{before}");
    (work, sandbox, before)
}

fn migrate_argv(sandbox: &SandboxProcess, work: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "migrate".into(), "--yes".into()];
    args.extend(sandbox.migrate_args(work));
    for arg in extra {
        args.push("-a".into());
        args.push((*arg).to_owned());
    }
    args
}

/// Starts migrate holding at `point`, sends `signal` there, returns (exit code, stderr).
fn stop_at(
    sandbox: &SandboxProcess,
    work: &Path,
    point: &str,
    signal: &str,
) -> (Option<i32>, String) {
    let hold = format!("hold_at={point}");
    let args = migrate_argv(sandbox, work, &[&hold, "hold_seconds=120"]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = sandbox
        .ankus(work, &argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("migrate starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut log = String::new();
    let mut sent = false;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("utf-8");
        if !sent && line.contains(&format!("holding at {point}")) {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
            sent = true;
        }
        log.push_str(&line);
        log.push('\n');
    }
    let status = child.wait().expect("ends");
    assert!(sent, "migrate never reached {point}:\n{log}");
    (status.code(), log)
}

/// The old cluster as it was before the migration: 30650 served, no mark, `copy` running and
/// `sort` still paused.
fn assert_as_before(sandbox: &SandboxProcess, work: &Path, context: &str) {
    let after = old_cluster(sandbox, work);
    let ports = after["ports"].to_string();
    assert!(
        ports.contains("30650") && !ports.contains("30649"),
        "{context}: {after}"
    );
    assert!(
        after["mark"].is_null(),
        "{context}: the mark is left: {after}"
    );
    assert_eq!(
        after["stopped"]["copy"], false,
        "{context}: copy left paused: {after}"
    );
    assert_eq!(
        after["stopped"]["sort"], true,
        "{context}: sort was started: {after}"
    );
}

/// Signal at every point, then the checks and a plain re-run that migrates.
fn at_every_point(signal: &str, expected_code: Option<i32>) {
    for point in POINTS {
        let (work, sandbox, _) = prepared();
        let (code, log) = stop_at(&sandbox, work.path(), point, signal);
        assert_eq!(code, expected_code, "{signal} at {point}:\n{log}");
        if signal != "KILL" {
            // The run's own cleanup put everything back before it exited.
            assert!(
                log.contains(&format!("interrupted (SIG{signal})")),
                "{point}:\n{log}"
            );
            assert!(
                log.contains("putting the old cluster back"),
                "{point}:\n{log}"
            );
            assert_as_before(
                &sandbox,
                work.path(),
                &format!("after SIG{signal} at {point}"),
            );
        }
        let args = migrate_argv(&sandbox, work.path(), &[]);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let rerun = sandbox.run(work.path(), &argv);
        assert_eq!(
            rerun.code, 0,
            "re-run after {signal} at {point}:\n{}",
            rerun.stderr
        );
        if signal == "KILL" {
            assert!(
                rerun.stderr.contains("left the old cluster quiesced"),
                "re-run after kill -9 at {point}:\n{}",
                rerun.stderr
            );
        }
        assert!(
            rerun.stdout.contains("paused 1 pipeline(s)"),
            "re-run after {signal} at {point} paused what ran:\n{}",
            rerun.stdout
        );
        assert!(rerun.stdout.contains("0 difference(s)"), "{}", rerun.stdout);
        assert_as_before(
            &sandbox,
            work.path(),
            &format!("after {signal} at {point} and a re-run"),
        );
    }
}

#[test]
fn kill_9_inside_the_quiesce_window_is_put_back_by_a_plain_rerun() {
    at_every_point("KILL", None);
}

#[test]
fn sigterm_inside_the_quiesce_window_runs_the_cleanup_and_exits_143() {
    at_every_point("TERM", Some(143));
}

#[test]
fn sighup_inside_the_quiesce_window_runs_the_cleanup_and_exits_129() {
    at_every_point("HUP", Some(129));
}

#[test]
fn unblock_ingress_and_resume_without_arguments_undo_a_killed_migrate_from_the_mark() {
    let (work, sandbox, _) = prepared();
    let (code, log) = stop_at(&sandbox, work.path(), "quiesce:after_swap", "KILL");
    assert_eq!(code, None, "{log}");
    // The operator lost the journal and the saved spec (a pod that died, a wiped laptop).
    std::fs::remove_dir_all(work.path().join(".ankus")).expect("journal dir");
    for entry in std::fs::read_dir(work.path()).expect("work") {
        let path = entry.expect("entry").path();
        if path.to_string_lossy().contains("pachd-service") {
            std::fs::remove_file(path).expect("saved spec");
        }
    }
    // Stranded: pachd no longer answers on 30650, only the Service tells what happened.
    let stranded = sandbox.eval(
        work.path(),
        r#"let k = kube::connect("old"); #{ ports: k.service("pachd").node_ports, mark: k.get("service", "pachd").metadata.annotations?["ankus.io/quiesce"] }"#,
    );
    assert!(
        stranded["ports"].to_string().contains("30649"),
        "{stranded}"
    );
    assert!(stranded["mark"].is_string(), "{stranded}");
    let out = sandbox.run(work.path(), &["run", "unblock-ingress", "-a", "from=old"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("nodePort 30649 -> 30650"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("started 1 pipeline(s)"),
        "{}",
        out.stdout
    );
    assert_as_before(&sandbox, work.path(), "after unblock-ingress from the mark");

    // The same through `resume`, after a kill before the swap.
    let (work, sandbox, _) = prepared();
    let (code, log) = stop_at(&sandbox, work.path(), "quiesce:before_swap", "KILL");
    assert_eq!(code, None, "{log}");
    std::fs::remove_dir_all(work.path().join(".ankus")).expect("journal dir");
    let out = sandbox.run(work.path(), &["run", "resume", "-a", "from=old"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("resumed copy"), "{}", out.stdout);
    assert_as_before(&sandbox, work.path(), "after resume from the mark");
}

#[test]
fn a_second_migrate_while_the_first_holds_the_old_cluster_is_refused_naming_it() {
    let (work, sandbox, _) = prepared();
    let hold = "hold_at=quiesce:after_swap";
    let args = migrate_argv(&sandbox, work.path(), &[hold, "hold_seconds=120"]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = sandbox
        .ankus(work.path(), &argv)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("migrate starts");
    let mut lines = BufReader::new(first.stderr.take().expect("stderr")).lines();
    for line in lines.by_ref() {
        if line
            .expect("utf-8")
            .contains("holding at quiesce:after_swap")
        {
            break;
        }
    }
    // The same journal: the lock file refuses it.
    let same = sandbox.run(work.path(), &argv[..argv.len() - 4]);
    assert_eq!(same.code, 2, "{}", same.stderr);
    assert!(
        same.stderr.contains("in use by another ankus run"),
        "{}",
        same.stderr
    );
    assert!(
        same.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        same.stderr
    );
    // Another journal: the mark on the Service refuses it, and nothing is touched.
    let mut other = migrate_argv(&sandbox, work.path(), &[]);
    other.extend([
        "--journal".into(),
        work.path().join("other.journal.json").display().to_string(),
    ]);
    let argv: Vec<&str> = other.iter().map(String::as_str).collect();
    let second = sandbox.run(work.path(), &argv);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second.stderr.contains("quiesced by another ankus run")
            && second.stderr.contains(&format!("pid {}", first.id()))
            && second.stderr.contains("still running"),
        "{}",
        second.stderr
    );
    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .expect("kill");
    for _ in lines.by_ref() {}
    assert_eq!(first.wait().expect("ends").code(), Some(143));
    assert_as_before(&sandbox, work.path(), "after the first run was stopped");
}
