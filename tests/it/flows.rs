//! The migration flow end to end in the sandbox: a real migration from the 1.11 dump with a
//! loader racing it, 1.9 → 1.10 on generated data, a failure at every step followed by a
//! resumed run, and a dry run that changes nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::backup::fixture;
use crate::support::{Outcome, ankus_bin, temp_dir};

/// A running `ankus sandbox`, killed on drop.
pub(crate) struct SandboxProcess {
    child: Child,
    /// Its directory.
    pub dir: PathBuf,
    /// `sandbox.json`.
    pub info: serde_json::Value,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SandboxProcess {
    /// Starts `ankus sandbox --dir DIR ARGS` and waits for its ready line.
    pub fn start(dir: &Path, args: &[&str]) -> SandboxProcess {
        let mut child = Command::new(ankus_bin())
            .arg("sandbox")
            .arg("--dir")
            .arg(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ankus sandbox starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        assert!(
            line.starts_with("sandbox ready"),
            "sandbox did not start: {line:?}"
        );
        let info =
            serde_json::from_slice(&std::fs::read(dir.join("sandbox.json")).expect("sandbox.json"))
                .expect("json");
        SandboxProcess {
            child,
            dir: dir.to_path_buf(),
            info,
        }
    }

    /// An `ankus` command with this sandbox's pachctl config and kubeconfig.
    pub fn ankus(&self, work: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(ankus_bin());
        command
            .args(args)
            .current_dir(work)
            .env("PACH_CONFIG", self.dir.join("pachctl-config.json"))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env_remove("PACH_CONTEXT")
            .env_remove("PACHD_ADDRESS")
            .stdin(Stdio::null());
        command
    }

    /// Runs an `ankus` command to the end.
    pub fn run(&self, work: &Path, args: &[&str]) -> Outcome {
        self.ankus(work, args).output().expect("ankus runs").into()
    }

    /// The `-a` arguments migrate needs for this sandbox.
    pub fn migrate_args(&self, work: &Path) -> Vec<String> {
        let bucket = |name: &str| {
            self.info["buckets"][name]
                .as_str()
                .expect("bucket")
                .to_owned()
        };
        vec![
            "-a".into(),
            "from=old".into(),
            "-a".into(),
            "to=new".into(),
            "-a".into(),
            format!("src_bucket={}", bucket("old")),
            "-a".into(),
            format!("dst_bucket={}", bucket("new")),
            "-a".into(),
            format!("backup={}", work.join("migrate.dump").display()),
            "-a".into(),
            format!(
                "deploy={}",
                self.info["new_manifest"].as_str().expect("manifest")
            ),
        ]
    }

    /// Evaluates a one-expression script against this sandbox and returns its JSON result.
    pub fn eval(&self, work: &Path, script: &str) -> serde_json::Value {
        let path = work.join(format!("eval-{}.rhai", uuid_like()));
        std::fs::write(&path, script).expect("write");
        let out = self.run(
            work,
            &[
                "run",
                path.to_str().expect("utf-8"),
                "--output",
                "json",
                "-q",
            ],
        );
        assert_eq!(out.code, 0, "{script}: {out:?}");
        let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        document["result"].clone()
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a user checks after a failed run: the old cluster serves again.
pub(crate) fn assert_old_cluster_serving(sandbox: &SandboxProcess, work: &Path, context: &str) {
    let state = sandbox.eval(
        work,
        r#"
let c = pachd::connect("old");
let k = kube::connect("old");
#{ states: c.pipelines().map(|p| p.state), ports: k.service("pachd").node_ports }
"#,
    );
    for pipeline_state in state["states"].as_array().expect("states") {
        assert!(
            ["running", "standby", "starting"].contains(&pipeline_state.as_str().expect("state")),
            "{context}: a pipeline is left {pipeline_state}"
        );
    }
    let ports = state["ports"].to_string();
    assert!(
        ports.contains("30650"),
        "{context}: pachd's NodePort 30650 is not restored: {ports}"
    );
    assert!(
        !ports.contains("30649"),
        "{context}: the alternate port is still declared: {ports}"
    );
}

#[test]
fn migrate_the_1_11_dump_to_1_13_while_a_loader_writes() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", fixture().to_str().expect("utf-8"), "--no-new"],
    );
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sandbox.dir.join("pachctl-config.json")).expect("config"),
    )
    .expect("json");
    let old = &config["v2"]["contexts"]["old"];
    let address = old["pachd_address"]
        .as_str()
        .expect("address")
        .replace("grpc://", "http://");
    let token = old["session_token"].as_str().expect("token").to_owned();

    // An external loader writes to `left` through the old cluster's NodePort all along.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let stop = tokio_util::sync::CancellationToken::new();
    let loader = runtime.spawn({
        let stop = stop.clone();
        async move {
            ankus::sandbox::pachd::loader::run(
                &address,
                "left",
                Duration::from_millis(40),
                stop,
                Some(&token),
            )
            .await
        }
    });
    std::thread::sleep(Duration::from_millis(400));

    let mut args: Vec<String> = vec!["run".into(), "migrate".into(), "--yes".into()];
    args.extend(sandbox.migrate_args(work.path()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = sandbox
        .ankus(work.path(), &argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("migrate starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("utf-8");
        // The loader stops when replay begins, so every write it made is either in the
        // backup or after the checkpoint, and must reach the new cluster.
        if line.contains("step replay: starting") {
            stop.cancel();
        }
        log.push_str(&line);
        log.push('\n');
    }
    let output = child.wait_with_output().expect("migrate ends");
    stop.cancel();
    let report = runtime.block_on(loader).expect("loader");
    assert_eq!(output.status.code(), Some(0), "{log}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("reconcile: 17 checks, 0 difference(s)"),
        "{stdout}"
    );

    // The loader was refused while ingress was blocked, and wrote before and after.
    let first_failure = report.attempts.iter().position(|a| a.error.is_some());
    let last_failure = report.attempts.iter().rposition(|a| a.error.is_some());
    let (first_failure, last_failure) = (
        first_failure.expect("writes failed while ingress was blocked"),
        last_failure.expect("failures"),
    );
    assert!(
        report.attempts[..first_failure]
            .iter()
            .any(|a| a.error.is_none()),
        "wrote before"
    );
    assert!(
        report.attempts[last_failure..]
            .iter()
            .any(|a| a.error.is_none()),
        "wrote again after the NodePorts were restored: {report:?}"
    );
    assert!(
        stdout.contains("replayed ") && !stdout.contains("replayed 0 commit(s)"),
        "{stdout}"
    );

    // Every write that succeeded is on the new cluster.
    let written: Vec<String> = report
        .attempts
        .iter()
        .filter(|a| a.error.is_none())
        .map(|a| a.path.clone())
        .collect();
    let root = std::fs::read_to_string(work.path().join("migrate.dump.new-root-token"))
        .expect("root token");
    let files = sandbox.eval(
        work.path(),
        &format!(
            "pachd::connect(#{{ context: \"new\", token: \"{}\" }}).list_file(\"left\", \"master\", \"/\").map(|f| f.path)",
            root.trim()
        ),
    );
    let on_new: Vec<&str> = files
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("path"))
        .collect();
    for path in &written {
        assert!(
            on_new.contains(&path.as_str()),
            "{path} written to old is missing on new"
        );
    }
    assert_old_cluster_serving(&sandbox, work.path(), "after the migration");
}

#[test]
fn migrate_1_9_to_1_10_with_generated_data() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &[
            "--old", "1.9", "--new", "1.10", "--seed", "sample", "--no-new",
        ],
    );
    let mut args: Vec<String> = vec![
        "run".into(),
        "migrate".into(),
        "--yes".into(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(sandbox.migrate_args(work.path()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sandbox.run(work.path(), &argv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let result = &document["result"];
    assert_eq!(result["reconcile"]["ok"], true);
    assert_eq!(result["preflight"]["from_version"], "1.9.12");
    assert_eq!(
        result["paused"],
        serde_json::json!(["sort", "copy"])
            .as_array()
            .map(|_| result["paused"].clone())
            .expect("same")
    );
    assert_eq!(result["paused"].as_array().expect("paused").len(), 2);
    assert_eq!(
        result["checkpoint"]["heads"]
            .as_object()
            .expect("heads")
            .len(),
        2
    );
    let new_version = sandbox.eval(work.path(), "pachd::connect(\"new\").version().to_string()");
    assert_eq!(new_version, "1.10.5");
    let repos = sandbox.eval(
        work.path(),
        "pachd::connect(\"new\").repos().map(|r| r.name)",
    );
    let mut names: Vec<&str> = repos
        .as_array()
        .expect("repos")
        .iter()
        .map(|r| r.as_str().expect("name"))
        .collect();
    names.sort();
    assert_eq!(names, ["copy", "left", "right", "sort"]);
}

#[test]
fn a_failure_at_each_step_leaves_the_old_cluster_serving_and_a_rerun_completes() {
    for step in [
        "quiesce",
        "checkpoint",
        "snapshot",
        "resume",
        "new_cluster",
        "restore",
        "reconcile",
        "replay",
    ] {
        let work = temp_dir();
        let sandbox = SandboxProcess::start(
            &work.path().join("sandbox"),
            &["--seed", "sample", "--no-new"],
        );
        let mut args: Vec<String> = vec!["run".into(), "migrate".into(), "--yes".into()];
        args.extend(sandbox.migrate_args(work.path()));
        let mut failing = args.clone();
        failing.extend(["-a".into(), format!("fail_at={step}")]);
        let argv: Vec<&str> = failing.iter().map(String::as_str).collect();
        let failed = sandbox.run(work.path(), &argv);
        assert_eq!(failed.code, 1, "{step}: {}", failed.stderr);
        assert!(
            failed
                .stderr
                .contains(&format!("injected failure after step {step}")),
            "{step}: {}",
            failed.stderr
        );
        assert_old_cluster_serving(&sandbox, work.path(), step);

        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let resumed = sandbox.run(work.path(), &argv);
        assert_eq!(
            resumed.code, 0,
            "{step}: resumed run failed: {}",
            resumed.stderr
        );
        assert!(
            resumed
                .stderr
                .contains("step preflight: already done (journal), skipping"),
            "{step}: {}",
            resumed.stderr
        );
        if ["resume", "new_cluster", "restore", "reconcile", "replay"].contains(&step) {
            // The snapshot was complete and the old cluster already resumed: not redone.
            assert!(
                resumed
                    .stderr
                    .contains("step snapshot: already done (journal), skipping"),
                "{step}: {}",
                resumed.stderr
            );
        } else {
            // A snapshot not finished under this quiesce is redone under a new one.
            assert!(
                resumed.stderr.contains("step quiesce: starting"),
                "{step}: {}",
                resumed.stderr
            );
        }
        assert!(
            resumed.stdout.contains("0 difference(s)"),
            "{step}: {}",
            resumed.stdout
        );
        assert_old_cluster_serving(
            &sandbox,
            work.path(),
            &format!("{step}, after the resumed run"),
        );
    }
}

#[test]
fn dry_run_prints_the_whole_plan_and_changes_nothing() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", "sample", "--no-new"],
    );
    // Seeded pipelines settle from `starting` to `running` as their workers come up, as on a
    // real cluster: compare the settled cluster, or the snapshot races that.
    sandbox.eval(
        work.path(),
        "let c = pachd::connect(\"old\"); let n = 0; while n < 200 && c.pipelines().some(|p| p.state != \"running\") { sleep(0.05); n += 1; } n",
    );
    let before = sandbox.eval(
        work.path(),
        "#{ svc: kube::connect(\"old\").get(\"service\", \"pachd\").spec, states: pachd::connect(\"old\").pipelines().map(|p| p.state) }",
    );
    let mut args: Vec<String> = vec![
        "run".into(),
        "migrate".into(),
        "--dry-run".into(),
        "--yes".into(),
    ];
    args.extend(sandbox.migrate_args(work.path()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sandbox.run(work.path(), &argv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for action in [
        "stop_pipeline",
        "save",
        "patch",
        "extract",
        "sync",
        "start_pipeline",
        "restore_saved",
        "apply",
        "restore",
    ] {
        assert!(
            out.stdout.contains(action),
            "plan lacks {action}: {}",
            out.stdout
        );
    }
    assert!(
        !work.path().join("migrate.dump").exists(),
        "a dry run wrote the backup"
    );
    let after = sandbox.eval(
        work.path(),
        "#{ svc: kube::connect(\"old\").get(\"service\", \"pachd\").spec, states: pachd::connect(\"old\").pipelines().map(|p| p.state) }",
    );
    assert_eq!(before, after, "a dry run changed the old cluster");
    let deployed = sandbox.eval(
        work.path(),
        "kube::connect(\"new\").list(\"deployments\").len()",
    );
    assert_eq!(deployed, 0, "a dry run deployed the new cluster");
}

#[test]
fn ctrl_c_during_the_window_reverts_the_quiesce_and_a_rerun_resumes() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", "sample", "--no-new"],
    );
    let mut args: Vec<String> = vec!["run".into(), "migrate".into(), "--yes".into()];
    args.extend(sandbox.migrate_args(work.path()));
    let mut paused = args.clone();
    paused.extend(["-a".into(), "pause_after=checkpoint".into()]);
    let argv: Vec<&str> = paused.iter().map(String::as_str).collect();
    let mut child = sandbox
        .ankus(work.path(), &argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("migrate starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut log = String::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("utf-8");
        if line.contains("pausing 30s after step checkpoint") {
            // Ingress is blocked and pipelines are paused right now: interrupt.
            let status = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
        log.push_str(&line);
        log.push('\n');
    }
    let output = child.wait_with_output().expect("ends");
    assert_eq!(output.status.code(), Some(130), "{log}");
    assert!(log.contains("putting the old cluster back"), "{log}");
    assert_old_cluster_serving(&sandbox, work.path(), "after Ctrl-C");
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.path().join(".ankus/migrate.journal.json")).expect("journal"),
    )
    .expect("json");
    let done: Vec<&str> = journal["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|step| step["status"] == "done")
        .map(|step| step["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        done,
        ["preflight"],
        "the reverted window is forgotten, the rest is kept"
    );

    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let resumed = sandbox.run(work.path(), &argv);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(
        resumed
            .stderr
            .contains("step preflight: already done (journal), skipping")
    );
    assert!(resumed.stderr.contains("step quiesce: starting"));
    assert!(
        resumed.stdout.contains("0 difference(s)"),
        "{}",
        resumed.stdout
    );
}
