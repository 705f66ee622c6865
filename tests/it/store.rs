//! The object-storage layer against a real S3-compatible server (`s3s-fs`, started on an
//! ephemeral loopback port), and the same suite against `file://` and `memory://`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{Outcome, ankus_bin, temp_dir, write};

pub(crate) const ACCESS_KEY: &str = "ankus-test-key";
pub(crate) const SECRET_KEY: &str = "ankus-test-secret-9f8e7d";

/// A running `s3s-fs` serving `root`, killed on drop.
pub(crate) struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) endpoint: String,
    /// The directory served: one folder per bucket, one file per object.
    pub(crate) root: tempfile::TempDir,
}

fn s3s_fs_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("s3s-fs"))
            .find(|candidate| candidate.is_file())
    });
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin/s3s-fs"))
        .filter(|candidate| candidate.is_file());
    on_path.or(in_cargo_home).unwrap_or_else(|| {
        panic!(
            "s3s-fs is not installed; the store tests need it. Install it with \
             .ci/install-s3s-fs.sh (cargo install s3s-fs@0.14.1 --features binary --locked)"
        )
    })
}

impl S3Server {
    /// Starts `s3s-fs` with `buckets` created, once it listens.
    pub(crate) fn start(buckets: &[&str]) -> S3Server {
        let root = temp_dir();
        for bucket in buckets {
            std::fs::create_dir_all(root.path().join(bucket)).expect("create bucket dir");
        }
        let mut child = Command::new(s3s_fs_binary())
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ])
            .arg(root.path())
            .env("RUST_LOG", "s3s_fs=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        // s3s-fs logs its bound address once it listens: that line is the readiness signal.
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(index) = line.find("server is running at ") {
                    let _ = sender.send(
                        line[index + "server is running at ".len()..]
                            .trim()
                            .to_owned(),
                    );
                }
            }
        });
        let endpoint = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(endpoint) => endpoint,
            Err(_) => {
                let _ = child.kill();
                panic!("s3s-fs did not report its address within 30s");
            }
        };
        S3Server {
            child,
            endpoint,
            root,
        }
    }

    /// The environment that points the AWS tools (and ankus) at this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// The keys stored in `bucket`, sorted, as files on disk.
    pub(crate) fn bucket_files(&self, bucket: &str) -> Vec<String> {
        let mut files = Vec::new();
        collect_files(
            &self.root.path().join(bucket),
            &self.root.path().join(bucket),
            &mut files,
        );
        files.sort();
        files
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            collect_files(base, &path, out);
        } else {
            out.push(
                path.strip_prefix(base)
                    .expect("below base")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

/// Runs `ankus ARGS` in `dir` with `env` set and every other AWS variable removed.
pub(crate) fn ankus_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Outcome {
    let mut command = Command::new(ankus_bin());
    command
        .args(args)
        .current_dir(dir)
        .env_remove("ANKUS_SCRIPTS")
        .stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("ankus runs").into()
}

const SUITE: &str = include_str!("store_suite.rhai");

fn run_suite(src: &str, dst: &str, env: &[(&str, String)], extra: &[&str]) -> Vec<String> {
    let dir = temp_dir();
    let script = write(dir.path(), "suite.rhai", SUITE);
    let src_arg = format!("src={src}");
    let dst_arg = format!("dst={dst}");
    let mut args = vec![
        "run",
        script.to_str().expect("utf-8"),
        "-a",
        &src_arg,
        "-a",
        &dst_arg,
    ];
    for arg in extra {
        args.extend(["-a", arg]);
    }
    let outcome = ankus_env(dir.path(), &args, env);
    assert_eq!(
        outcome.code, 0,
        "suite failed for {src}:\n{}\n{}",
        outcome.stdout, outcome.stderr
    );
    outcome.stdout.lines().map(str::to_owned).collect()
}

fn expected_suite_lines() -> Vec<String> {
    let big = 6 * 1024 * 1024 + 17;
    [
        format!(
            "list: [\"100%/x%41y=21\", \"a b/c d.txt=22\", \"big/over-threshold={big}\", \"deep/1/2/3/4/5/6/7/leaf=34\", \"empty=0\", \"plus+sign=20\", \"ünï/cødé+1.txt=29\"]"
        ),
        "list prefix: [\"deep/1/2/3/4/5/6/7/leaf\"]".to_owned(),
        "head: 29".to_owned(),
        "get: content of 100%/x%41y".to_owned(),
        "get empty: ''".to_owned(),
        "exists: true false".to_owned(),
        "head missing: not_found".to_owned(),
        "copy+rename: false content of plus+sign".to_owned(),
        "deleted: false".to_owned(),
        format!("first sync: copied=7 skipped=0 failed=0 bytes={}", big + 21 + 22 + 34 + 20 + 29),
        format!("big copy: {big} true"),
        "unicode copy: content of ünï/cødé+1.txt".to_owned(),
        "re-sync: copied=0 skipped=7".to_owned(),
        "after changes: copied=1".to_owned(),
        "checksum sync: copied=1 text=CONTENT OF a b/c d.txt".to_owned(),
        "max_delete: conflict".to_owned(),
        "guarded: true".to_owned(),
        "mirror delete: deleted=2 false".to_owned(),
        "verify: ok=false missing_refs=[\"block/missing-block\", \"tag/present\"]".to_owned(),
        "verify refs: ok=true checked=1".to_owned(),
        "verify missing: ok=false missing=[\"ünï/cødé+1.txt\"]".to_owned(),
    ]
    .into_iter()
    .collect()
}

#[test]
fn conformance_suite_passes_against_s3s_fs() {
    let server = S3Server::start(&["src-bucket", "dst-bucket"]);
    let lines = run_suite("s3://src-bucket", "s3://dst-bucket", &server.env(), &[]);
    assert_eq!(lines, expected_suite_lines());
    assert!(
        server
            .bucket_files("dst-bucket")
            .contains(&"big/over-threshold".to_owned())
    );
}

#[test]
fn conformance_suite_passes_against_s3s_fs_listed_two_keys_per_page() {
    // Every listing, flat or by folder, follows continuation tokens across pages.
    let server = S3Server::start(&["src-bucket", "dst-bucket"]);
    let lines = run_suite(
        "s3://src-bucket",
        "s3://dst-bucket",
        &server.env(),
        &["list_page=2"],
    );
    assert_eq!(lines, expected_suite_lines());
}

#[test]
fn conformance_suite_passes_against_file_urls() {
    let dir = temp_dir();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    let lines = run_suite(
        &format!("file://{}", src.display()),
        &format!("file://{}", dir.path().join("dst").display()),
        &[],
        &[],
    );
    assert_eq!(lines, expected_suite_lines());
}

#[test]
fn conformance_suite_passes_against_memory_urls() {
    let lines = run_suite(
        "memory://suite-src/under/a/prefix",
        "memory://suite-dst",
        &[],
        &[],
    );
    assert_eq!(lines, expected_suite_lines());
}

#[test]
fn clone_bucket_script_copies_server_side_then_only_what_is_missing() {
    let server = S3Server::start(&["old", "new"]);
    let env = server.env();
    let dir = temp_dir();
    let fill = write(
        dir.path(),
        "fill.rhai",
        r#"let s = store::open("s3://old"); for i in 0..50 { s.put_text(`object/${i}`, `v${i}`); } s.put_text("tag/master", "x");"#,
    );
    let filled = ankus_env(dir.path(), &["run", fill.to_str().expect("utf-8")], &env);
    assert_eq!(filled.code, 0, "{}", filled.stderr);

    let first = ankus_env(
        dir.path(),
        &[
            "run",
            "clone-bucket",
            "-a",
            "src=s3://old",
            "-a",
            "dst=s3://new",
            "-a",
            "verify=true",
        ],
        &env,
    );
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("s3://old -> s3://new: copied 51 ("),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("(51 server-side), 0 B through this host"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("s3://old -> s3://new: ok (51 source objects"),
        "{}",
        first.stdout
    );
    assert_eq!(server.bucket_files("new").len(), 51);

    let again = ankus_env(
        dir.path(),
        &[
            "run",
            "clone-bucket",
            "-a",
            "src=s3://old",
            "-a",
            "dst=s3://new",
        ],
        &env,
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("copied 0 (0 B), skipped 51, failed 0"),
        "{}",
        again.stdout
    );

    // A dry run of a mirrored deletion lists it in the plan and changes nothing.
    std::fs::remove_file(server.root.path().join("old/object/7")).expect("remove");
    let dry = ankus_env(
        dir.path(),
        &[
            "run",
            "clone-bucket",
            "-a",
            "src=s3://old",
            "-a",
            "dst=s3://new",
            "-a",
            "delete=true",
            "--dry-run",
        ],
        &env,
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        dry.stdout.contains("store    delete  s3://new/object/7"),
        "{}",
        dry.stdout
    );
    assert!(server.bucket_files("new").contains(&"object/7".to_owned()));

    let mirrored = ankus_env(
        dir.path(),
        &[
            "--output",
            "json",
            "run",
            "clone-bucket",
            "-a",
            "src=s3://old",
            "-a",
            "dst=s3://new",
            "-a",
            "delete=true",
        ],
        &env,
    );
    assert_eq!(mirrored.code, 0, "{}", mirrored.stderr);
    let document: serde_json::Value =
        serde_json::from_str(&mirrored.stdout).expect("json on stdout");
    assert_eq!(document["result"]["deleted"], 1);
    assert_eq!(document["result"]["skipped"], 50);
    assert!(
        mirrored.stderr.contains(r#""event":"store.sync.done""#),
        "{}",
        mirrored.stderr
    );
    assert!(!server.bucket_files("new").contains(&"object/7".to_owned()));
}

fn caught(dir: &Path, env: &[(&str, String)], body: &str) -> String {
    let script = write(
        dir,
        "bad.rhai",
        &format!("try {{ {body} }} catch (e) {{ print(`${{e.kind}}|${{e.message}}`); }}"),
    );
    let outcome = ankus_env(dir, &["run", script.to_str().expect("utf-8")], env);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    outcome.stdout.trim().to_owned()
}

#[test]
fn bad_input_fails_clearly_naming_the_url_never_the_secret_and_writes_nothing() {
    let server = S3Server::start(&["src-bucket", "empty-dst"]);
    let env = server.env();
    let dir = temp_dir();
    let seed = write(
        dir.path(),
        "seed.rhai",
        r#"store::open("s3://src-bucket").put_text("data/k", "v");"#,
    );
    assert_eq!(
        ankus_env(dir.path(), &["run", seed.to_str().expect("utf-8")], &env).code,
        0
    );

    let malformed = caught(dir.path(), &env, r#"store::open("s3:/src-bucket")"#);
    assert!(
        malformed.starts_with("invalid|parse store URL 's3:/src-bucket'"),
        "{malformed}"
    );
    let unknown = caught(dir.path(), &env, r#"store::open("ftp://host/x")"#);
    assert!(
        unknown.starts_with("invalid|") && unknown.contains("unknown scheme 'ftp'"),
        "{unknown}"
    );
    let in_url = caught(
        dir.path(),
        &env,
        &format!(r#"store::open("s3://AKIA:{SECRET_KEY}@src-bucket")"#),
    );
    assert!(
        in_url.contains("credentials in URLs") && !in_url.contains(SECRET_KEY),
        "{in_url}"
    );

    // Without keys the AWS chain is asked (on first use); it finds none under an empty HOME.
    let empty_home = temp_dir();
    let no_credentials = caught(
        dir.path(),
        &[
            ("AWS_ENDPOINT_URL", server.endpoint.clone()),
            ("HOME", empty_home.path().display().to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ],
        r#"store::open("s3://src-bucket").exists("data/k")"#,
    );
    assert!(
        no_credentials.starts_with(
            "unauthenticated|head s3://src-bucket/data/k: get credentials from the AWS chain"
        ),
        "{no_credentials}"
    );

    let bad_page = caught(
        dir.path(),
        &env,
        r#"store::open("s3://src-bucket", #{ list_page: 0 })"#,
    );
    assert!(
        bad_page.starts_with("invalid|open s3://src-bucket: option 'list_page' must be a number of keys from 1 to 1000000 (got '0')"),
        "{bad_page}"
    );

    let missing_bucket = caught(
        dir.path(),
        &env,
        r#"for o in store::open("s3://no-such-bucket").list() { print(o); }"#,
    );
    assert!(
        missing_bucket.starts_with("not_found|list s3://no-such-bucket: the bucket does not exist"),
        "{missing_bucket}"
    );

    let wrong_secret: Vec<(&str, String)> = env
        .iter()
        .map(|(name, value)| match *name {
            "AWS_SECRET_ACCESS_KEY" => (*name, "wrong-secret-value".to_owned()),
            _ => (*name, value.clone()),
        })
        .collect();
    let denied = caught(
        dir.path(),
        &wrong_secret,
        r#"store::open("s3://src-bucket").sync_to("s3://empty-dst")"#,
    );
    assert!(
        denied.starts_with("unauthenticated|") && denied.contains("s3://"),
        "{denied}"
    );
    assert!(
        !denied.contains("wrong-secret-value") && !denied.contains(SECRET_KEY),
        "{denied}"
    );

    let overlap = caught(
        dir.path(),
        &env,
        r#"store::open("s3://src-bucket/data").sync_to("s3://src-bucket/data/copy")"#,
    );
    assert!(
        overlap.starts_with("invalid|clone s3://src-bucket/data to s3://src-bucket/data/copy"),
        "{overlap}"
    );
    let bad_key = caught(
        dir.path(),
        &env,
        r#"store::open("s3://empty-dst").put_text("a//b", "x")"#,
    );
    assert!(
        bad_key.starts_with("invalid|use key 'a//b' in s3://empty-dst"),
        "{bad_key}"
    );

    assert_eq!(server.bucket_files("empty-dst"), Vec::<String>::new());
    assert_eq!(server.bucket_files("src-bucket"), vec!["data/k".to_owned()]);
}

fn streaming_round_trip(url: &str, options: &ankus::store::StoreOptions) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let chunk = vec![7u8; 1 << 20];
        let total = 20 << 20;

        let mut abandoned =
            ankus::store::open_writer(&format!("{url}/abandoned.dump"), options).expect("writer");
        for _ in 0..(total >> 20) {
            abandoned.write(&chunk).await.expect("write");
        }
        drop(abandoned);

        let mut writer =
            ankus::store::open_writer(&format!("{url}/backup.dump"), options).expect("writer");
        for _ in 0..(total >> 20) {
            writer.write(&chunk).await.expect("write");
        }
        let bucket = ankus::store::Bucket::open(url, options).expect("open");
        assert!(
            !bucket.exists("backup.dump").await.expect("exists"),
            "visible before finish"
        );
        assert_eq!(writer.finish().await.expect("finish"), total as u64);
        assert_eq!(
            bucket.head("backup.dump").await.expect("head").size,
            total as u64
        );
        assert!(
            !bucket.exists("abandoned.dump").await.expect("exists"),
            "abandoned upload became visible"
        );

        let mut reader = ankus::store::open_reader(&format!("{url}/backup.dump"), options)
            .await
            .expect("reader");
        assert_eq!(reader.size(), total as u64);
        let mut back = Vec::new();
        reader.read_to_end(&mut back).await.expect("read");
        assert_eq!(back.len(), total);
        assert!(back.iter().all(|byte| *byte == 7));

        let missing = ankus::store::open_reader(&format!("{url}/nothing.dump"), options)
            .await
            .err()
            .expect("missing");
        assert_eq!(
            ankus::kind::Kinded::kind(&missing),
            ankus::kind::Kind::NotFound
        );
    });
}

#[test]
fn streaming_writer_is_visible_only_after_finish_on_s3_file_and_memory() {
    let server = S3Server::start(&["dumps"]);
    let mut options = ankus::store::StoreOptions::new();
    options.insert("endpoint".into(), server.endpoint.clone());
    options.insert("access_key_id".into(), ACCESS_KEY.into());
    options.insert("secret_access_key".into(), SECRET_KEY.into());
    streaming_round_trip("s3://dumps/nested", &options);
    assert_eq!(
        server.bucket_files("dumps"),
        vec!["nested/backup.dump".to_owned()]
    );

    let dir = temp_dir();
    streaming_round_trip(
        &format!("file://{}", dir.path().display()),
        &Default::default(),
    );
    streaming_round_trip("memory://streaming", &Default::default());
}
