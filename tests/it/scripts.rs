//! Every bundled script and every example, run by `ankus run` against a sandbox of its own,
//! checked by what a user sees: the lines printed, the exit code, and the clusters' state
//! afterwards (read back through the bindings).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::backup::fixture;
use crate::support::{Outcome, ankus_bin, ankus_in, temp_dir};

/// A running `ankus sandbox`, killed (and waited for) on drop.
struct Sandbox {
    child: Child,
    dir: PathBuf,
    info: serde_json::Value,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandbox {
    /// Starts `ankus sandbox --dir WORK/sandbox ARGS` and waits for its ready line.
    fn start(work: &Path, args: &[&str]) -> Sandbox {
        let dir = work.join("sandbox");
        let mut child = Command::new(ankus_bin())
            .arg("sandbox")
            .arg("--dir")
            .arg(&dir)
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
                .expect("sandbox.json is JSON");
        Sandbox { child, dir, info }
    }

    /// The fixture (1.11, auth active) in `old`, an empty 1.13 `new`.
    fn fixture(work: &Path) -> Sandbox {
        Sandbox::start(work, &["--seed", fixture().to_str().expect("utf-8")])
    }

    /// Runs `ankus ARGS` in `work` with this sandbox's pachctl config and kubeconfig.
    fn run(&self, work: &Path, args: &[&str]) -> Outcome {
        Command::new(ankus_bin())
            .args(args)
            .current_dir(work)
            .env("PACH_CONFIG", self.dir.join("pachctl-config.json"))
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env_remove("PACH_CONTEXT")
            .env_remove("PACHD_ADDRESS")
            .env_remove("ANKUS_SCRIPTS")
            .stdin(Stdio::null())
            .output()
            .expect("ankus runs")
            .into()
    }

    /// `ankus run SCRIPT --yes ARGS...`, each `KEY=VALUE` of `script_args` passed with `-a`.
    fn script(&self, work: &Path, script: &str, script_args: &[&str], extra: &[&str]) -> Outcome {
        let mut argv: Vec<&str> = vec!["run", script, "--yes"];
        for arg in script_args {
            argv.push("-a");
            argv.push(arg);
        }
        argv.extend(extra);
        self.run(work, &argv)
    }

    /// Evaluates a script and returns its JSON result.
    fn eval(&self, work: &Path, script: &str) -> serde_json::Value {
        let path = work.join("eval.rhai");
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

    fn bucket(&self, name: &str) -> String {
        self.info["buckets"][name]
            .as_str()
            .expect("bucket")
            .to_owned()
    }

    fn new_manifest(&self) -> String {
        self.info["new_manifest"]
            .as_str()
            .expect("new_manifest")
            .to_owned()
    }
}

/// An example's path in the source tree.
fn example(name: &str) -> String {
    format!("{}/examples/{name}.rhai", env!("CARGO_MANIFEST_DIR"))
}

fn ok(out: &Outcome, what: &str) {
    assert_eq!(
        out.code, 0,
        "{what} failed:\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
}

fn sorted_names(value: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect();
    names.sort();
    names
}

const BUNDLED: [&str; 12] = [
    "backup",
    "block-ingress",
    "clone-bucket",
    "inventory",
    "migrate",
    "migrate-1.7-to-1.8",
    "migrate-1.8-to-1.9",
    "pause",
    "restore",
    "resume",
    "unblock-ingress",
    "upgrade-1.6-to-1.7",
];

#[test]
fn scripts_list_shows_every_bundled_script_with_its_summary_and_an_ejected_copy_overrides() {
    let work = temp_dir();
    let listed = ankus_in(work.path(), &["scripts", "list"]);
    ok(&listed, "scripts list");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in BUNDLED {
        let source = std::fs::read_to_string(root.join("scripts").join(format!("{name}.rhai")))
            .expect("script");
        let summary = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("//! "))
            .expect("a //! summary line");
        let line = listed
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{}", listed.stdout));
        assert!(line.contains(summary), "{name}: {line:?} lacks {summary:?}");
    }
    assert!(
        listed.stdout.contains("target ") && listed.stdout.contains("redeploy "),
        "{}",
        listed.stdout
    );

    let ejected = work.path().join("mine");
    ok(
        &ankus_in(
            work.path(),
            &["scripts", "eject", ejected.to_str().expect("utf-8")],
        ),
        "eject",
    );
    let copy = ejected.join("scripts/inventory.rhai");
    let text = std::fs::read_to_string(&copy).expect("ejected inventory");
    std::fs::write(
        &copy,
        text.replace(
            "print(inventory.source);",
            "print(\"MY INVENTORY\"); print(inventory.source);",
        ),
    )
    .expect("edit");
    let dump = fixture();
    let run = |extra: &[&str]| {
        let mut argv = vec!["run", "inventory", "-a"];
        let backup_arg = format!("backup={}", dump.display());
        argv.push(&backup_arg);
        argv.extend(extra);
        ankus_in(work.path(), &argv)
    };
    let edited = run(&["--scripts", ejected.to_str().expect("utf-8")]);
    ok(&edited, "ejected inventory");
    assert!(
        edited.stdout.starts_with("MY INVENTORY\n"),
        "{}",
        edited.stdout
    );
    assert!(
        edited
            .stdout
            .contains("sort   10       master=f7fc16d2 stats=a9813f5c"),
        "{}",
        edited.stdout
    );
    let bundled = run(&[]);
    ok(&bundled, "bundled inventory");
    assert!(
        !bundled.stdout.contains("MY INVENTORY"),
        "{}",
        bundled.stdout
    );
}

#[test]
fn backup_writes_a_verified_dump_to_a_file_and_to_a_bucket_and_inventory_reads_both() {
    let work = temp_dir();
    let sandbox = Sandbox::fixture(work.path());
    let dump = work.path().join("prod.dump");
    let to = format!("to={}", dump.display());
    let out = sandbox.script(work.path(), "backup", &["from=old", &to], &[]);
    ok(&out, "backup");
    for line in [
        "records        64",
        "repos          4",
        "pipelines      2",
        "auth           active, 5 ACL(s)",
        "verified       yes",
    ] {
        assert!(out.stdout.contains(line), "no {line:?} in:\n{}", out.stdout);
    }
    assert!(
        out.stdout.contains("objects        not included"),
        "{}",
        out.stdout
    );
    assert!(work.path().join("prod.dump.manifest.json").exists());

    // With objects, straight into a bucket.
    let bucket_dir = work.path().join("backups");
    std::fs::create_dir_all(&bucket_dir).expect("mkdir");
    let url = format!("file://{}/full.dump", bucket_dir.display());
    let out = sandbox.script(
        work.path(),
        "backup",
        &["from=old", &format!("to={url}"), "objects=true"],
        &["--output", "json"],
    );
    ok(&out, "backup to a URL");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(document["result"]["summary"]["records"], 631);
    assert_eq!(document["result"]["verified"], true);
    assert!(
        bucket_dir.join("full.dump").exists()
            && bucket_dir.join("full.dump.manifest.json").exists()
    );

    let from_url = sandbox.script(work.path(), "inventory", &[&format!("backup={url}")], &[]);
    ok(&from_url, "inventory of the URL");
    assert!(
        from_url.stdout.contains("(631 records, snappy)"),
        "{}",
        from_url.stdout
    );
    let live = sandbox.script(
        work.path(),
        "inventory",
        &["from=old"],
        &["--output", "json", "-q"],
    );
    ok(&live, "inventory of old");
    let document: serde_json::Value = serde_json::from_str(&live.stdout).expect("json");
    let repos = &document["result"]["repos"];
    assert_eq!(repos.as_array().expect("repos").len(), 4);
    assert_eq!(repos[0]["name"], "copy");
    assert_eq!(repos[0]["commits"], 10);
    assert_eq!(document["result"]["pipelines"][1]["state"], "running");
    let neither = sandbox.script(work.path(), "inventory", &[], &[]);
    assert_eq!(neither.code, 1);
    assert!(
        neither
            .stderr
            .contains("give exactly one of -a from=CONTEXT or -a backup="),
        "{}",
        neither.stderr
    );
}

#[test]
fn restore_simulates_then_restores_the_auth_dump_and_reconciles() {
    let work = temp_dir();
    let sandbox = Sandbox::fixture(work.path());
    let dump = work.path().join("prod.dump");
    ok(
        &sandbox.script(
            work.path(),
            "backup",
            &[
                "from=old",
                &format!("to={}", dump.display()),
                "objects=true",
            ],
            &[],
        ),
        "backup",
    );
    let backup_arg = format!("backup={}", dump.display());
    let out = sandbox.script(work.path(), "restore", &["to=new", &backup_arg], &[]);
    ok(&out, "restore");
    assert!(
        out.stdout.contains("target new: pachd 1.13.4, 0 repo(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("simulated: 631 records verified"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("restored 631 ops from"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 difference(s)"), "{}", out.stdout);
    let token_file = work.path().join("prod.dump.root-token");
    let token =
        std::fs::read_to_string(&token_file).expect("the root token is kept beside the dump");
    let state = sandbox.eval(
        work.path(),
        &format!("let c = pachd::connect(#{{ context: \"new\", token: \"{}\" }}); #{{ repos: c.repos().map(|r| r.name), auth: c.is_auth_active(), me: c.whoami().username }}", token.trim()),
    );
    assert_eq!(
        sorted_names(&state["repos"]),
        ["copy", "left", "right", "sort"]
    );
    assert_eq!(state["auth"], true);
    assert_eq!(state["me"], "pach:root");

    // A second restore into the now non-empty cluster is refused in preflight.
    let again = sandbox.script(work.path(), "restore", &["to=new", &backup_arg], &[]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("the target already has 4 repo(s)"),
        "{}",
        again.stderr
    );
}

#[test]
fn restore_of_a_no_objects_dump_refuses_a_bucket_without_its_objects_and_sends_nothing() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--seed", "sample"]);
    let dump = work.path().join("meta.dump");
    ok(
        &sandbox.script(
            work.path(),
            "backup",
            &["from=old", &format!("to={}", dump.display())],
            &[],
        ),
        "backup",
    );
    let backup_arg = format!("backup={}", dump.display());
    let empty_bucket = format!("bucket={}", sandbox.bucket("new"));
    let out = sandbox.script(
        work.path(),
        "restore",
        &["to=new", &backup_arg, &empty_bucket],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("step simulate: failed"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("lacks") && out.stderr.contains("object(s) the backup references"),
        "{}",
        out.stderr
    );
    assert_eq!(
        sandbox.eval(work.path(), "pachd::connect(\"new\").repos().len()"),
        0
    );

    // Once the old bucket is cloned into the new cluster's, the resumed run restores.
    let src = format!("src={}", sandbox.bucket("old"));
    let dst = format!("dst={}", sandbox.bucket("new"));
    ok(
        &sandbox.script(work.path(), "clone-bucket", &[&src, &dst], &[]),
        "clone-bucket",
    );
    let out = sandbox.script(
        work.path(),
        "restore",
        &["to=new", &backup_arg, &empty_bucket],
        &[],
    );
    ok(&out, "restore after the clone");
    assert!(
        out.stderr
            .contains("step preflight: already done (journal), skipping"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("all referenced objects present in"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 difference(s)"), "{}", out.stdout);
}

#[test]
fn pause_records_what_it_stopped_and_resume_restarts_exactly_those() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--seed", "sample"]);
    sandbox.eval(
        work.path(),
        "let c = pachd::connect(\"old\"); c.stop_all(#{ names: [\"copy\"] }); c.pipeline(\"copy\").state",
    );
    let out = sandbox.script(work.path(), "pause", &["from=old"], &[]);
    ok(&out, "pause");
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("paused "))
            .collect::<Vec<_>>(),
        ["paused sort"]
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join(".ankus/paused-old.json")).expect("state file"),
    )
    .expect("json");
    assert_eq!(state["paused"], serde_json::json!(["sort"]));
    let states = || {
        sandbox.eval(
            work.path(),
            "let m = #{}; for p in pachd::connect(\"old\").pipelines() { m[p.name] = p.state; } m",
        )
    };
    assert_eq!(
        states(),
        serde_json::json!({ "copy": "paused", "sort": "paused" })
    );

    let out = sandbox.script(work.path(), "resume", &["from=old"], &[]);
    ok(&out, "resume");
    assert!(
        out.stdout
            .contains("resumed sort\n1 pipeline(s) resumed on old"),
        "{}",
        out.stdout
    );
    let after = states();
    assert_eq!(
        after["copy"], "paused",
        "resume restarted a pipeline pause did not stop"
    );
    assert_ne!(after["sort"], "paused");

    let custom = work.path().join("elsewhere.json");
    let missing = sandbox.script(
        work.path(),
        "resume",
        &["from=old", &format!("state={}", custom.display())],
        &[],
    );
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("no pause recorded in"),
        "{}",
        missing.stderr
    );
}

#[test]
fn block_ingress_moves_the_node_ports_and_unblock_puts_them_back() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--seed", "sample"]);
    let saved = format!("saved={}", work.path().join("svc.json").display());
    let out = sandbox.script(work.path(), "block-ingress", &["from=old", &saved], &[]);
    ok(&out, "block-ingress");
    assert!(
        out.stdout.contains("nodePort 30650 -> 30649"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("pachd no longer answers on its old port; while blocked, use grpc://"),
        "{}",
        out.stdout
    );
    let ports = sandbox.eval(
        work.path(),
        "kube::connect(\"old\").service(\"pachd\").node_ports",
    );
    assert!(
        ports.to_string().contains("30649") && !ports.to_string().contains("30650,"),
        "{ports}"
    );
    let refused = sandbox.run(work.path(), &["run", "inventory", "-a", "from=old"]);
    assert_eq!(
        refused.code, 1,
        "pachd still answers on 30650: {}",
        refused.stdout
    );

    let twice = sandbox.script(
        work.path(),
        "block-ingress",
        &["from=old", "saved=other.json"],
        &[],
    );
    assert_eq!(twice.code, 1);
    assert!(
        twice.stderr.contains("ingress looks blocked already"),
        "{}",
        twice.stderr
    );

    let out = sandbox.script(work.path(), "unblock-ingress", &["from=old", &saved], &[]);
    ok(&out, "unblock-ingress");
    assert!(
        out.stdout.contains("pachd answers again at grpc://") && out.stdout.contains(":30650"),
        "{}",
        out.stdout
    );
    let ports = sandbox.eval(
        work.path(),
        "kube::connect(\"old\").service(\"pachd\").node_ports",
    );
    assert_eq!(
        ports,
        serde_json::json!([30600, 30650, 30651, 30652, 30654, 30999])
    );
}

/// What the test does between the runs of upgrade-1.6-to-1.7, as the operator would with
/// `pachctl deploy`: the sandbox's rolling update is a restart of pachd with a newer image on
/// the same state.
const ROLLING_UPDATE: &str = r#"
let k = kube::connect("old");
k.scale("deployment", "pachd", 0);
k.patch("deployment", "pachd", #{ spec: #{ template: #{ spec: #{ containers: [#{ name: "pachd", image: "pachyderm/pachd:1.11.9" }] } } } });
k.scale("deployment", "pachd", 1);
let deadline = now_ms() + 20000;
loop {
    try { return pachd::connect("old").version().to_string(); } catch (e) { if now_ms() > deadline { throw e; } }
    sleep(0.1);
}
"#;

#[test]
fn upgrade_1_6_to_1_7_backs_up_prints_the_rolling_update_and_resumes_after_it() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--old", "1.10", "--seed", "sample"]);
    let backup_arg = format!("backup={}", work.path().join("pre-1.7.dump").display());
    let refused = sandbox.script(
        work.path(),
        "upgrade-1.6-to-1.7",
        &["from=old", &backup_arg],
        &[],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("old already runs pachd 1.10.5: the 1.6 -> 1.7 rolling update is behind it"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("ankus run migrate (the general procedure"),
        "{}",
        refused.stderr
    );

    let args = ["from=old", backup_arg.as_str(), "allow_versions=1.10"];
    let stopped = sandbox.script(work.path(), "upgrade-1.6-to-1.7", &args, &[]);
    assert_eq!(stopped.code, 1, "{}", stopped.stderr);
    for line in [
        "  pachctl deploy <same arguments as before> --namespace old",
        "  kubectl --namespace old rollout status deployment/pachd",
        "  ankus run upgrade-1.6-to-1.7 -a from=old -a backup=",
    ] {
        assert!(
            stopped.stdout.contains(line),
            "no {line:?} in:\n{}",
            stopped.stdout
        );
    }
    assert!(
        stopped.stderr.contains("stopped for the rolling update")
            && stopped.stderr.contains("old still runs 1.10.5"),
        "{}",
        stopped.stderr
    );
    assert!(work.path().join("pre-1.7.dump.manifest.json").exists());

    assert_eq!(sandbox.eval(work.path(), ROLLING_UPDATE), "1.11.9");
    let resumed = sandbox.script(work.path(), "upgrade-1.6-to-1.7", &args, &[]);
    ok(&resumed, "resumed upgrade");
    assert!(
        resumed
            .stderr
            .contains("step backup: already done (journal), skipping"),
        "{}",
        resumed.stderr
    );
    assert!(
        resumed
            .stdout
            .contains("upgraded old from 1.10.5 to 1.11.9"),
        "{}",
        resumed.stdout
    );
    assert!(
        resumed.stdout.contains("0 difference(s)"),
        "{}",
        resumed.stdout
    );
}

#[test]
fn migrate_1_7_to_1_8_stops_for_the_redeploy_then_resumes_with_manifests() {
    let work = temp_dir();
    let sandbox = Sandbox::start(
        work.path(),
        &[
            "--old", "1.10", "--new", "1.11", "--seed", "sample", "--no-new",
        ],
    );
    let backup_arg = format!("backup={}", work.path().join("pre-1.8.dump").display());
    let refused = sandbox.script(
        work.path(),
        "migrate-1.7-to-1.8",
        &["from=old", &backup_arg],
        &[],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("migrate-1.7-to-1.8 needs a pachd 1.7.x source, but it runs 1.10.5"),
        "{}",
        refused.stderr
    );

    let args = [
        "from=old",
        "to=new",
        "to_kube=new",
        backup_arg.as_str(),
        "allow_versions=1.10",
    ];
    let stopped = sandbox.script(work.path(), "migrate-1.7-to-1.8", &args, &[]);
    assert_eq!(stopped.code, 1);
    assert!(
        stopped.stdout.contains("redeploy pachd 1.8.0 now:"),
        "{}",
        stopped.stdout
    );
    assert!(
        stopped
            .stdout
            .contains("  pachctl undeploy --namespace old"),
        "{}",
        stopped.stdout
    );
    assert!(
        stopped
            .stdout
            .contains("  pachctl deploy <same arguments as before> --namespace new"),
        "{}",
        stopped.stdout
    );
    assert!(
        stopped.stderr.contains("stopped for the redeploy"),
        "{}",
        stopped.stderr
    );

    let deploy = format!("deploy={}", sandbox.new_manifest());
    let mut with_deploy = args.to_vec();
    with_deploy.push(&deploy);
    let resumed = sandbox.script(work.path(), "migrate-1.7-to-1.8", &with_deploy, &[]);
    ok(&resumed, "resumed migrate-1.7-to-1.8");
    assert!(
        resumed
            .stderr
            .contains("step extract: already done (journal), skipping"),
        "{}",
        resumed.stderr
    );
    assert!(
        resumed.stdout.contains("to pachd 1.11.9 (new)")
            && resumed.stdout.contains("0 difference(s)"),
        "{}",
        resumed.stdout
    );
    // The backup carried the objects into the new cluster's own bucket.
    let objects = sandbox.eval(
        work.path(),
        &format!(
            "backup::open(\"{}\").summary().objects.objects",
            work.path().join("pre-1.8.dump").display()
        ),
    );
    assert!(objects.as_i64().expect("count") > 0, "{objects}");
    let state = sandbox.eval(work.path(), "#{ repos: pachd::connect(\"new\").repos().map(|r| r.name), old: kube::connect(\"old\").deployment(\"pachd\").replicas }");
    assert_eq!(
        sorted_names(&state["repos"]),
        ["copy", "left", "right", "sort"]
    );
    assert_eq!(state["old"], 0, "the old pachd was not undeployed");
}

#[test]
fn migrate_1_8_to_1_9_redeploys_on_the_same_bucket_and_restores() {
    let work = temp_dir();
    let sandbox = Sandbox::start(
        work.path(),
        &[
            "--old", "1.10", "--new", "1.11", "--seed", "sample", "--no-new",
        ],
    );
    let old_bucket = sandbox.bucket("old");
    // The redeployed pachd runs on the old cluster's bucket.
    let manifest = std::fs::read_to_string(sandbox.new_manifest()).expect("manifest");
    let new_root = sandbox
        .bucket("new")
        .trim_start_matches("file://")
        .to_owned();
    let same_bucket = work.path().join("same-bucket.yaml");
    std::fs::write(
        &same_bucket,
        manifest.replace(&new_root, old_bucket.trim_start_matches("file://")),
    )
    .expect("write");

    let refused = sandbox.script(
        work.path(),
        "migrate-1.8-to-1.9",
        &["from=old", "backup=x.dump"],
        &[],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("needs a pachd 1.8.x source, but it runs 1.10.5"),
        "{}",
        refused.stderr
    );

    let backup_arg = format!("backup={}", work.path().join("pre-1.9.dump").display());
    let deploy = format!("deploy={}", same_bucket.display());
    let bucket = format!("bucket={old_bucket}");
    let out = sandbox.script(
        work.path(),
        "migrate-1.8-to-1.9",
        &[
            "from=old",
            "to=new",
            "to_kube=new",
            &backup_arg,
            "allow_versions=1.10",
            &deploy,
            &bucket,
        ],
        &["--output", "json"],
    );
    ok(&out, "migrate-1.8-to-1.9");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(document["result"]["to_version"], "1.11.9");
    assert_eq!(document["result"]["redeployed_by"], "manifests");
    assert_eq!(document["result"]["reconcile"]["ok"], true);
    let repos = sandbox.eval(
        work.path(),
        "pachd::connect(\"new\").list_file(\"left\", \"master\", \"/\").len()",
    );
    assert!(
        repos.as_i64().expect("count") > 0,
        "files of left are readable from the shared bucket"
    );
    let new_bucket_dir = PathBuf::from(new_root);
    assert_eq!(
        new_bucket_dir.read_dir().map(|d| d.count()).unwrap_or(0),
        0,
        "objects were copied instead of shared"
    );
}

#[test]
fn example_migrate_some_repos_restores_only_the_named_repos() {
    let work = temp_dir();
    let sandbox = Sandbox::fixture(work.path());
    let dump = work.path().join("prod.dump");
    ok(
        &sandbox.script(
            work.path(),
            "backup",
            &[
                "from=old",
                &format!("to={}", dump.display()),
                "objects=true",
            ],
            &[],
        ),
        "backup",
    );
    let backup_arg = format!("backup={}", dump.display());
    let out = sandbox.script(
        work.path(),
        &example("migrate-some-repos"),
        &[&backup_arg, "repos=left,right", "to=new"],
        &[],
    );
    ok(&out, "migrate-some-repos");
    assert!(
        out.stdout.contains("repos [\"left\", \"right\"]"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("no differences"), "{}", out.stdout);
    let refused = sandbox.script(
        work.path(),
        &example("migrate-some-repos"),
        &[&backup_arg, "repos=copy", "to=new"],
        &["--journal", "other.json"],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused
            .stderr
            .contains("pipeline copy reads left, which is not in -a repos"),
        "{}",
        refused.stderr
    );
}

#[test]
fn example_private_registry_rewrites_pipeline_images() {
    let work = temp_dir();
    let sandbox = Sandbox::fixture(work.path());
    let dump = work.path().join("prod.dump");
    ok(
        &sandbox.script(
            work.path(),
            "backup",
            &[
                "from=old",
                &format!("to={}", dump.display()),
                "objects=true",
            ],
            &[],
        ),
        "backup",
    );
    let out = sandbox.script(
        work.path(),
        &example("private-registry"),
        &[
            &format!("backup={}", dump.display()),
            "to=new",
            "registry=registry.local:5000/mirror",
        ],
        &[],
    );
    ok(&out, "private-registry");
    assert!(
        out.stdout
            .contains("copy: registry.local:5000/mirror/ubuntu:16.04"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("sort: registry.local:5000/mirror/ubuntu:16.04"),
        "{}",
        out.stdout
    );
    // The original backup is untouched.
    let images = sandbox.eval(
        work.path(),
        &format!(
            "backup::open(\"{}\").summary().pipelines.map(|p| p.image)",
            dump.display()
        ),
    );
    assert_eq!(images, serde_json::json!(["ubuntu:16.04", "ubuntu:16.04"]));
}

#[test]
fn example_loadbalancer_ingress_limits_the_source_ranges_and_restores_the_service() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--seed", "sample"]);
    let to = format!("to={}", work.path().join("lb.dump").display());
    let refused = sandbox.script(
        work.path(),
        &example("loadbalancer-ingress"),
        &["from=old", &to],
        &[],
    );
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("is a NodePort, not a LoadBalancer"),
        "{}",
        refused.stderr
    );

    sandbox.eval(work.path(), "kube::connect(\"old\").patch(\"service\", \"pachd\", #{ spec: #{ type: \"LoadBalancer\" } }, \"merge\").spec.type");
    let out = sandbox.script(
        work.path(),
        &example("loadbalancer-ingress"),
        &["from=old", &to, "allow=10.1.2.3/32"],
        &[],
    );
    ok(&out, "loadbalancer-ingress");
    assert!(
        out.stdout
            .contains("pachd: load balancer limited to [\"10.1.2.3/32\"]"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("restored the pachd Service from"),
        "{}",
        out.stderr
    );
    assert!(work.path().join("lb.dump.manifest.json").exists());
    let spec = sandbox.eval(
        work.path(),
        "kube::connect(\"old\").get(\"service\", \"pachd\").spec",
    );
    assert_eq!(spec["type"], "LoadBalancer");
    assert!(
        spec.get("loadBalancerSourceRanges")
            .is_none_or(|v| v.is_null()),
        "{spec}"
    );
}

#[test]
fn example_nightly_backup_writes_a_dated_key_and_deletes_old_ones() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--seed", "sample"]);
    let bucket_dir = work.path().join("nightly");
    std::fs::create_dir_all(&bucket_dir).expect("mkdir");
    for name in [
        "old-2000-01-01.dump",
        "old-2000-01-01.dump.manifest.json",
        "other-2000-01-01.dump",
    ] {
        std::fs::write(bucket_dir.join(name), "x").expect("write");
    }
    let bucket = format!("bucket=file://{}", bucket_dir.display());
    let out = sandbox.script(
        work.path(),
        &example("nightly-backup"),
        &["from=old", &bucket, "keep_days=7"],
        &["--output", "json"],
    );
    ok(&out, "nightly-backup");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        sorted_names(&document["result"]["deleted"]),
        ["old-2000-01-01.dump", "old-2000-01-01.dump.manifest.json"]
    );
    let mut left: Vec<String> = bucket_dir
        .read_dir()
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        left[0].starts_with("old-20") && left[0].ends_with(".dump"),
        "{left:?}"
    );
    assert!(left[1].ends_with(".dump.manifest.json"), "{left:?}");
    assert_eq!(
        left[2], "other-2000-01-01.dump",
        "a backup of another context was deleted"
    );
}

#[test]
fn example_restore_other_namespace_deploys_from_rewritten_manifests_and_restores() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--seed", "sample", "--no-new"]);
    let dump = work.path().join("prod.dump");
    ok(
        &sandbox.script(
            work.path(),
            "backup",
            &[
                "from=old",
                &format!("to={}", dump.display()),
                "objects=true",
            ],
            &[],
        ),
        "backup",
    );
    // Manifests generated for the `default` namespace, deployed into `new` through the kube
    // context `old` (whose own namespace is `old`).
    let manifest = std::fs::read_to_string(sandbox.new_manifest()).expect("manifest");
    let for_default = work.path().join("pachd-default.json");
    std::fs::write(
        &for_default,
        manifest.replace("\"namespace\": \"new\"", "\"namespace\": \"default\""),
    )
    .expect("write");
    let out = sandbox.script(
        work.path(),
        &example("restore-other-namespace"),
        &[
            &format!("backup={}", dump.display()),
            &format!("manifests={}", for_default.display()),
            "kube=old",
            "namespace=new",
            "to=new",
        ],
        &[],
    );
    ok(&out, "restore-other-namespace");
    assert!(
        out.stdout
            .contains("applied [\"Service/pachd\", \"Deployment/pachd\"] in namespace new"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("into pachd 1.13.4 in namespace new"),
        "{}",
        out.stdout
    );
    let state = sandbox.eval(
        work.path(),
        "#{ in_default: kube::connect(#{ context: \"old\", namespace: \"default\" }).list(\"deployments\").len(), repos: pachd::connect(\"new\").repos().map(|r| r.name) }",
    );
    assert_eq!(
        state["in_default"], 0,
        "something was deployed into the manifests' own namespace"
    );
    assert_eq!(
        sorted_names(&state["repos"]),
        ["copy", "left", "right", "sort"]
    );
}

#[test]
fn clone_bucket_copies_the_old_bucket_and_a_rerun_copies_nothing() {
    let work = temp_dir();
    let sandbox = Sandbox::start(work.path(), &["--seed", "sample"]);
    let copy = work.path().join("copy");
    std::fs::create_dir_all(&copy).expect("mkdir");
    let src = format!("src={}", sandbox.bucket("old"));
    let dst = format!("dst=file://{}", copy.display());
    let out = sandbox.script(
        work.path(),
        "clone-bucket",
        &[&src, &dst, "verify=true"],
        &["--output", "json"],
    );
    ok(&out, "clone-bucket");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let copied = document["result"]["copied"].as_i64().expect("copied");
    assert!(copied > 0, "{}", out.stdout);
    let again = sandbox.script(
        work.path(),
        "clone-bucket",
        &[&src, &dst],
        &["--output", "json"],
    );
    ok(&again, "clone-bucket again");
    let document: serde_json::Value = serde_json::from_str(&again.stdout).expect("json");
    assert_eq!(document["result"]["copied"], 0);
    assert_eq!(document["result"]["skipped"], copied);
}
