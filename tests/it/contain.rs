//! Containment: one path policy for every binding that touches local files, errors that
//! never quote a file, `sync_to` that resolves what it overlaps and refuses to empty a
//! destination, script limits an operator can raise, credentials from the environment masked
//! from the start.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::store::S3Server;
use crate::support::{Outcome, ankus_bin, temp_dir, write};

/// Runs `ankus ARGS` in `dir` with extra environment and stdin closed.
fn ankus_env(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Outcome {
    Command::new(ankus_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("ANKUS_SCRIPTS")
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .output()
        .expect("ankus runs")
        .into()
}

/// Runs `body` inside `try`, printing `KIND|MESSAGE` of what it throws (or `ok`).
fn caught(dir: &Path, env: &[(&str, String)], body: &str) -> String {
    let script = write(
        dir,
        "caught.rhai",
        &format!(
            "try {{ {body}; print(\"ok\"); }} catch (e) {{ print(`${{e.kind}}|${{e.message}}`); }}"
        ),
    );
    let outcome = ankus_env(dir, &["run", script.to_str().expect("utf-8")], env);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    outcome.stdout.trim().to_owned()
}

#[test]
fn store_open_of_a_file_url_outside_the_allowed_directories_is_refused_even_through_a_symlink() {
    let dir = temp_dir();
    let outside = caught(dir.path(), &[], r#"store::open("file:///etc")"#);
    assert!(
        outside.starts_with("permission_denied|") && outside.contains("--allow-path"),
        "{outside}"
    );
    std::os::unix::fs::symlink("/etc", dir.path().join("etc-link")).expect("symlink");
    let linked = caught(
        dir.path(),
        &[],
        &format!(r#"store::open("file://{}/etc-link")"#, dir.path().display()),
    );
    assert!(
        linked.starts_with("permission_denied|") && linked.contains("--allow-path"),
        "{linked}"
    );
    let inside = caught(
        dir.path(),
        &[],
        &format!(r#"store::open("file://{}")"#, dir.path().display()),
    );
    assert_eq!(inside, "ok");
}

#[test]
fn kube_connect_never_echoes_a_file_that_is_not_a_kubeconfig_nor_reads_outside_the_allowed_directories()
 {
    let dir = temp_dir();
    write(
        dir.path(),
        "notes.txt",
        "root:x:0:0:secret-first-line-7c1d:/root:/bin/bash\nsecond line\n",
    );
    let parsed = caught(
        dir.path(),
        &[],
        r#"kube::connect(#{ kubeconfig: "notes.txt" })"#,
    );
    assert!(!parsed.contains("secret-first-line"), "{parsed}");
    assert!(!parsed.contains("root:x"), "{parsed}");
    assert!(parsed.contains("is not a kubeconfig"), "{parsed}");
    let outside = caught(
        dir.path(),
        &[],
        r#"kube::connect(#{ kubeconfig: "/etc/passwd" })"#,
    );
    assert!(
        outside.starts_with("permission_denied|") && outside.contains("--allow-path"),
        "{outside}"
    );
}

#[test]
fn backup_open_never_shows_a_files_first_bytes_as_a_length_nor_reads_outside_the_allowed_directories()
 {
    let dir = temp_dir();
    let text = "hunter2-not-a-dump at all\n";
    write(dir.path(), "notes.txt", text);
    let first_bytes = i64::from_le_bytes(text.as_bytes()[..8].try_into().expect("8 bytes"));
    let read = caught(dir.path(), &[], r#"backup::open("notes.txt").summary()"#);
    assert!(!read.contains(&first_bytes.to_string()), "{read}");
    assert!(read.contains("invalid length prefix"), "{read}");
    let outside = caught(dir.path(), &[], r#"backup::open("/etc/passwd").summary()"#);
    assert!(
        outside.starts_with("permission_denied|") && outside.contains("--allow-path"),
        "{outside}"
    );
    let url = caught(
        dir.path(),
        &[],
        r#"backup::open("file:///etc/passwd").summary()"#,
    );
    assert!(url.starts_with("permission_denied|"), "{url}");
}

#[test]
fn credential_environment_variables_are_masked_before_any_store_is_opened() {
    let dir = temp_dir();
    let env = [
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-4e1f0a9b".to_owned()),
        ("AWS_SESSION_TOKEN", "aws-session-77d2c1e8".to_owned()),
        ("AZURE_STORAGE_ACCOUNT_KEY", "azure-key-0b3c9d5e".to_owned()),
        (
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            "google-key-6a8f2e4d".to_owned(),
        ),
        ("PACH_AUTH_TOKEN", "pach-token-91c3b7aa".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ];
    let script = write(
        dir.path(),
        "env.rhai",
        r#"for name in ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY",
    "GOOGLE_SERVICE_ACCOUNT_KEY", "PACH_AUTH_TOKEN", "AWS_REGION"] {
    print(`${name}=${env(name)}`);
}
"#,
    );
    let outcome = ankus_env(dir.path(), &["run", script.to_str().expect("utf-8")], &env);
    assert_eq!(outcome.code, 0, "{outcome:?}");
    for (_, secret) in &env[..5] {
        assert!(
            !outcome.stdout.contains(secret.as_str()),
            "{}",
            outcome.stdout
        );
    }
    assert!(
        outcome.stdout.contains("AWS_SECRET_ACCESS_KEY=***"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("AWS_REGION=us-east-1"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn sync_to_refuses_a_destination_inside_the_source_reached_through_a_symlink() {
    let dir = temp_dir();
    let source = dir.path().join("src");
    write(&source, "data/a.txt", "a");
    std::os::unix::fs::symlink(&source, dir.path().join("alias")).expect("symlink");
    let refused = caught(
        dir.path(),
        &[],
        &format!(
            r#"store::open("file://{src}").sync_to("file://{alias}/copy", #{{}})"#,
            src = source.display(),
            alias = dir.path().join("alias").display()
        ),
    );
    assert!(
        refused.starts_with("invalid|") && refused.contains("overlaps the source"),
        "{refused}"
    );
    assert!(!source.join("copy").exists());
}

#[test]
fn sync_to_refuses_localhost_and_127_0_0_1_of_one_server_as_if_they_were_two() {
    let server = S3Server::start(&["bucket-one"]);
    let env = server.env();
    let dir = temp_dir();
    let localhost = server.endpoint.replace("127.0.0.1", "localhost");
    let refused = caught(
        dir.path(),
        &env,
        &format!(
            r#"let src = store::open("s3://bucket-one"); src.put_text("data/a", "a");
src.sync_to("s3://bucket-one/copy", #{{ dst_options: #{{ endpoint: "{localhost}", region: "us-east-1" }} }})"#
        ),
    );
    assert!(
        refused.starts_with("invalid|") && refused.contains("overlaps the source"),
        "{refused}"
    );
    assert_eq!(server.bucket_files("bucket-one"), vec!["data/a".to_owned()]);
}

#[test]
fn sync_to_refuses_a_file_url_of_the_directory_an_s3_server_serves_the_bucket_from() {
    let server = S3Server::start(&["bucket-one"]);
    let env = server.env();
    let dir = temp_dir();
    let bucket_dir = server.root.path().join("bucket-one");
    let inside = caught(
        dir.path(),
        &env,
        &format!(
            r#"let src = store::open("s3://bucket-one"); src.put_text("data/a", "a");
src.sync_to("file://{}/copy", #{{}})"#,
            bucket_dir.display()
        ),
    );
    assert!(
        inside.starts_with("invalid|") && inside.contains("overlaps the source"),
        "{inside}"
    );
    // The other way round, with deletions: the source is inside the destination, and
    // mirroring deletions would have removed the source itself.
    let around = caught(
        dir.path(),
        &env,
        &format!(
            r#"store::open("s3://bucket-one/data").sync_to("file://{}", #{{ delete: true }})"#,
            bucket_dir.display()
        ),
    );
    assert!(
        around.starts_with("invalid|") && around.contains("overlaps the source"),
        "{around}"
    );
    assert_eq!(server.bucket_files("bucket-one"), vec!["data/a".to_owned()]);
}

#[test]
fn sync_to_with_delete_refuses_a_source_that_lists_nothing_instead_of_emptying_the_destination() {
    let dir = temp_dir();
    let destination = dir.path().join("dst");
    write(&destination, "keep/me.txt", "precious");
    let refused = caught(
        dir.path(),
        &[],
        &format!(
            r#"store::open("memory://no-such-prefix-3f2a").sync_to("file://{}", #{{ delete: true }})"#,
            destination.display()
        ),
    );
    assert!(
        refused.starts_with("conflict|") && refused.contains("lists no objects"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_to_string(destination.join("keep/me.txt")).expect("still there"),
        "precious"
    );
}

#[test]
fn sync_to_a_missing_directory_creates_nothing_in_a_dry_run_or_a_failed_run() {
    let dir = temp_dir();
    let source = dir.path().join("src");
    write(&source, "a.txt", "a");
    let script = write(
        dir.path(),
        "clone.rhai",
        &format!(
            r#"let r = store::open("file://{}").sync_to(arg("to"), #{{}}); print(`copied ${{r.copied}}`);"#,
            source.display()
        ),
    );
    let fresh = dir.path().join("new/deeper");
    let to = format!("to=file://{}", fresh.display());
    let script = script.to_str().expect("utf-8");
    let planned = ankus_env(dir.path(), &["run", "--dry-run", script, "-a", &to], &[]);
    assert_eq!(planned.code, 0, "{planned:?}");
    assert!(planned.stdout.contains("copied 1"), "{planned:?}");
    assert!(
        !dir.path().join("new").exists(),
        "a dry run created the destination"
    );

    let overlapping = format!("to=file://{}/inner/copy", source.display());
    let failed = ankus_env(dir.path(), &["run", script, "-a", &overlapping], &[]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(failed.stderr.contains("overlaps the source"), "{failed:?}");
    assert!(
        !source.join("inner").exists(),
        "a failed run created the destination"
    );

    let done = ankus_env(dir.path(), &["run", script, "-a", &to], &[]);
    assert_eq!(done.code, 0, "{done:?}");
    assert_eq!(
        std::fs::read_to_string(fresh.join("a.txt")).expect("copied"),
        "a"
    );
}

#[test]
fn file_sync_does_not_follow_symlinks_out_of_the_source_unless_asked() {
    let dir = temp_dir();
    let source = dir.path().join("src");
    write(&source, "a.txt", "a");
    let elsewhere = dir.path().join("elsewhere");
    write(&elsewhere, "secret.txt", "not part of the bucket");
    std::os::unix::fs::symlink(&elsewhere, source.join("linked")).expect("symlink");
    std::os::unix::fs::symlink(elsewhere.join("secret.txt"), source.join("file-link"))
        .expect("symlink");
    let plain = dir.path().join("plain");
    let copied = caught(
        dir.path(),
        &[],
        &format!(
            r#"let r = store::open("file://{}").sync_to("file://{}", #{{}}); print(r.copied)"#,
            source.display(),
            plain.display()
        ),
    );
    assert_eq!(copied, "1\nok");
    assert!(plain.join("a.txt").exists());
    assert!(!plain.join("linked").exists());
    assert!(!plain.join("file-link").exists());

    let followed = dir.path().join("followed");
    let copied = caught(
        dir.path(),
        &[],
        &format!(
            r#"let r = store::open("file://{}", #{{ follow_symlinks: true }}).sync_to("file://{}", #{{}}); print(r.copied)"#,
            source.display(),
            followed.display()
        ),
    );
    assert_eq!(copied, "3\nok");
    assert!(followed.join("linked/secret.txt").exists());
}

#[test]
fn a_runaway_script_stops_at_a_limit_that_names_itself_and_how_to_raise_it() {
    let dir = temp_dir();
    let spin = write(dir.path(), "spin.rhai", "loop { }\n");
    let spin = spin.to_str().expect("utf-8");
    let stopped = ankus_env(
        dir.path(),
        &["run", spin],
        &[("ANKUS_MAX_OPERATIONS", "20000".to_owned())],
    );
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(
        stopped
            .stderr
            .contains("--max-operations N or ANKUS_MAX_OPERATIONS=N"),
        "{}",
        stopped.stderr
    );

    let grow = write(dir.path(), "grow.rhai", "let s = \"x\"; loop { s += s; }\n");
    let grow = grow.to_str().expect("utf-8");
    let stopped = ankus_env(dir.path(), &["run", grow, "--max-string-size", "4096"], &[]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(
        stopped.stderr.contains("string too large")
            && stopped
                .stderr
                .contains("--max-string-size N or ANKUS_MAX_STRING_SIZE=N"),
        "{}",
        stopped.stderr
    );

    let deep = write(dir.path(), "deep.rhai", "fn f(n) { f(n + 1) }\nf(0);\n");
    let deep = deep.to_str().expect("utf-8");
    let stopped = ankus_env(dir.path(), &["run", deep, "--max-call-levels", "8"], &[]);
    assert_eq!(stopped.code, 1, "{stopped:?}");
    assert!(
        stopped.stderr.contains("--max-call-levels"),
        "{}",
        stopped.stderr
    );

    let pushes = write(
        dir.path(),
        "pushes.rhai",
        "let a = []; for i in 0..100 { a.push(i); } print(a.len());\n",
    );
    let pushes = pushes.to_str().expect("utf-8");
    let stopped = ankus_env(dir.path(), &["run", pushes, "--max-array-size", "10"], &[]);
    assert!(
        stopped.stderr.contains("--max-array-size N"),
        "{}",
        stopped.stderr
    );
    let raised = ankus_env(
        dir.path(),
        &["run", pushes],
        &[("ANKUS_MAX_ARRAY_SIZE", "1000".to_owned())],
    );
    assert_eq!(raised.code, 0, "{raised:?}");
    assert_eq!(raised.stdout.trim(), "100");
}

/// The path policy is for what a script reaches on its own: a dump the operator names in an
/// `-a` argument (and the side files beside it) is theirs to use, without `--allow-path`.
#[test]
fn a_dump_named_in_an_argument_outside_the_working_directory_needs_no_allow_path() {
    let dir = temp_dir();
    let elsewhere = tempfile::Builder::new()
        .prefix("ankus-elsewhere-")
        .tempdir_in("/var/tmp")
        .expect("a directory outside the working and temporary ones");
    let dump = elsewhere.path().join("prod.dump");
    std::fs::copy(crate::support::fixture_dump(), &dump).expect("copy the fixture");
    let named = format!("backup={}", dump.display());
    let out = ankus_env(dir.path(), &["run", "inventory", "-a", &named], &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("records"), "{}", out.stdout);
    // A path the script makes up on its own is still refused there.
    let other = elsewhere.path().join("other.dump");
    std::fs::copy(&dump, &other).expect("copy");
    let refused = caught(
        dir.path(),
        &[],
        &format!(r#"backup::open("{}")"#, other.display()),
    );
    assert!(
        refused.starts_with("permission_denied|") && refused.contains("--allow-path"),
        "{refused}"
    );
}
