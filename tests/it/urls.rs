//! Dumps at object-store URLs (`file://` and S3 through `s3s-fs`) end to end: written by
//! `backup`, read back by `restore` and `migrate`, checked against their manifest as a local
//! path is, and kept as private as a local dump.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::backup::{decompressed, dump_of_raw, fixture};
use crate::flows::SandboxProcess;
use crate::store::S3Server;
use crate::support::{Outcome, ankus_in, temp_dir, write};

/// Runs `ankus ARGS` against `sandbox` with the S3 environment of `server` (and no other
/// AWS variable).
fn with_s3(sandbox: &SandboxProcess, server: &S3Server, work: &Path, args: &[&str]) -> Outcome {
    let mut command: Command = sandbox.ankus(work, args);
    command.env_remove("ANKUS_SCRIPTS");
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    for (name, value) in server.env() {
        command.env(name, value);
    }
    command.output().expect("ankus runs").into()
}

fn ok(out: &Outcome, what: &str) {
    assert_eq!(
        out.code, 0,
        "{what} failed:\n{}\n{}",
        out.stdout, out.stderr
    );
}

fn fixture_sandbox(work: &Path) -> SandboxProcess {
    SandboxProcess::start(
        &work.join("sandbox"),
        &["--seed", fixture().to_str().expect("utf-8")],
    )
}

#[test]
fn restore_from_a_file_url_no_longer_fails_reading_from_async_code() {
    let work = temp_dir();
    let sandbox = fixture_sandbox(work.path());
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).expect("mkdir");
    let url = format!("file://{}/full.dump", backups.display());
    let to = format!("to={url}");
    ok(
        &sandbox.run(
            work.path(),
            &[
                "run",
                "backup",
                "--yes",
                "-a",
                "from=old",
                "-a",
                &to,
                "-a",
                "objects=true",
            ],
        ),
        "backup to a file URL",
    );
    let from = format!("backup={url}");
    let out = sandbox.run(
        work.path(),
        &["run", "restore", "--yes", "-a", "to=new", "-a", &from],
    );
    ok(&out, "restore from a file URL");
    assert!(
        !out.stderr.contains("not from async code"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains(&format!("restored 631 ops from {url} into new")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 difference(s)"), "{}", out.stdout);
}

#[test]
fn restore_from_an_s3_url_no_longer_fails_reading_from_async_code() {
    let work = temp_dir();
    let sandbox = fixture_sandbox(work.path());
    let server = S3Server::start(&["backups"]);
    let url = "s3://backups/prod/full.dump";
    ok(
        &with_s3(
            &sandbox,
            &server,
            work.path(),
            &[
                "run",
                "backup",
                "--yes",
                "-a",
                "from=old",
                "-a",
                &format!("to={url}"),
                "-a",
                "objects=true",
            ],
        ),
        "backup to S3",
    );
    assert_eq!(
        server.bucket_files("backups"),
        ["prod/full.dump", "prod/full.dump.manifest.json"]
    );
    let out = with_s3(
        &sandbox,
        &server,
        work.path(),
        &[
            "run",
            "restore",
            "--yes",
            "-a",
            "to=new",
            "-a",
            &format!("backup={url}"),
        ],
    );
    ok(&out, "restore from S3");
    assert!(
        out.stdout
            .contains("restored 631 ops from s3://backups/prod/full.dump into new"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("0 difference(s)"), "{}", out.stdout);
}

/// Writes the fixture with its manifest as ankus does, then cuts the dump after `keep`
/// records (at a record boundary, so only the manifest can tell).
fn cut_dump_with_full_manifest(dir: &Path, keep: usize) {
    let script = write(
        dir,
        "write.rhai",
        &format!(
            "backup::open({:?}).write(\"full.dump\"); ()",
            fixture().display()
        ),
    );
    ok(
        &ankus_in(dir, &["run", script.to_str().expect("utf-8"), "--yes"]),
        "write the fixture with a manifest",
    );
    assert!(dir.join("full.dump.manifest.json").is_file());
    let raw = decompressed(&fixture());
    let mut at = 0usize;
    for _ in 0..keep {
        let length = i64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes")) as usize;
        at += 8 + length;
    }
    std::fs::write(dir.join("full.dump"), dump_of_raw(&raw[..at])).expect("cut the dump");
}

fn assert_cut_refused(out: &Outcome, source: &str) {
    assert_eq!(out.code, 1, "{source}: {out:?}");
    assert!(
        out.stderr.contains("does not match its manifest"),
        "{source}: {}",
        out.stderr
    );
    assert!(
        out.stderr.contains("609 records, manifest says 631"),
        "{source}: {}",
        out.stderr
    );
}

#[test]
fn a_url_dump_cut_after_609_of_631_records_fails_its_manifest_check() {
    let work = temp_dir();
    cut_dump_with_full_manifest(work.path(), 609);
    let as_path = ankus_in(work.path(), &["backup", "verify", "full.dump"]);
    assert_cut_refused(&as_path, "path");

    let url = format!("file://{}/full.dump", work.path().display());
    let as_file_url = ankus_in(work.path(), &["backup", "verify", &url]);
    assert_cut_refused(&as_file_url, "file://");

    let server = S3Server::start(&["backups"]);
    for name in ["full.dump", "full.dump.manifest.json"] {
        std::fs::copy(
            work.path().join(name),
            server.root.path().join("backups").join(name),
        )
        .expect("copy into the bucket");
    }
    let mut command = Command::new(crate::support::ankus_bin());
    command
        .args(["backup", "verify", "s3://backups/full.dump"])
        .current_dir(work.path())
        .env_remove("ANKUS_SCRIPTS");
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    for (name, value) in server.env() {
        command.env(name, value);
    }
    let as_s3: Outcome = command.output().expect("ankus runs").into();
    assert_cut_refused(&as_s3, "s3://");
}

#[test]
fn file_url_dumps_and_manifests_are_written_0600_like_local_ones() {
    let work = temp_dir();
    let sandbox = fixture_sandbox(work.path());
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).expect("mkdir");
    let url = format!("file://{}/full.dump", backups.display());
    let local = work.path().join("local.dump");
    for destination in [url.clone(), local.display().to_string()] {
        ok(
            &sandbox.run(
                work.path(),
                &[
                    "run",
                    "backup",
                    "--yes",
                    "-a",
                    "from=old",
                    "-a",
                    &format!("to={destination}"),
                ],
            ),
            &format!("backup to {destination}"),
        );
    }
    for file in [
        backups.join("full.dump"),
        backups.join("full.dump.manifest.json"),
        work.path().join("local.dump"),
        work.path().join("local.dump.manifest.json"),
    ] {
        let mode = std::fs::metadata(&file)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{} is {:o}",
            file.display(),
            mode & 0o777
        );
    }
}

#[test]
fn migrate_with_a_file_url_backup_no_longer_fails_at_quiesce() {
    let work = temp_dir();
    let sandbox = SandboxProcess::start(
        &work.path().join("sandbox"),
        &["--seed", "sample", "--no-new"],
    );
    let backups = work.path().join("backups");
    std::fs::create_dir_all(&backups).expect("mkdir");
    let url = format!("file://{}/migrate.dump", backups.display());
    let mut args: Vec<String> = vec![
        "run".into(),
        "migrate".into(),
        "--yes".into(),
        "--output".into(),
        "json".into(),
    ];
    args.extend(sandbox.migrate_args(work.path()).into_iter().map(|arg| {
        if arg.starts_with("backup=") {
            format!("backup={url}")
        } else {
            arg
        }
    }));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = sandbox.run(work.path(), &argv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        document["result"]["reconcile"]["ok"], true,
        "{}",
        out.stdout
    );
    assert!(backups.join("migrate.dump").is_file());
    assert!(backups.join("migrate.dump.manifest.json").is_file());
    let names = sandbox.eval(
        work.path(),
        "let n = pachd::connect(\"new\").repos().map(|r| r.name); n.sort(); n",
    );
    assert_eq!(names, serde_json::json!(["copy", "left", "right", "sort"]));
}

/// The fixture with the manifest ankus writes for it, in `dir` as `full.dump`; returns the
/// manifest's JSON.
fn fixture_with_manifest(dir: &Path) -> serde_json::Value {
    cut_dump_with_full_manifest(dir, 631);
    serde_json::from_slice(&std::fs::read(dir.join("full.dump.manifest.json")).expect("read"))
        .expect("json")
}

#[test]
fn a_manifest_naming_another_file_or_other_op_versions_fails_verify() {
    let work = temp_dir();
    let manifest = fixture_with_manifest(work.path());
    let url = format!("file://{}/full.dump", work.path().display());
    for (field, value, expected) in [
        (
            "file",
            serde_json::json!("other.dump"),
            "the dump is full.dump, manifest says other.dump",
        ),
        (
            "versions",
            serde_json::json!({"1.13": 631}),
            "op versions {\"1.11\": 631} differ from the manifest's {\"1.13\": 631}",
        ),
    ] {
        let mut changed = manifest.clone();
        changed[field] = value;
        std::fs::write(
            work.path().join("full.dump.manifest.json"),
            changed.to_string(),
        )
        .expect("write");
        for source in ["full.dump", url.as_str()] {
            let out = ankus_in(work.path(), &["backup", "verify", source]);
            assert_eq!(out.code, 1, "{field} {source}: {out:?}");
            assert!(
                out.stderr.contains("does not match its manifest") && out.stderr.contains(expected),
                "{field} {source}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn a_manifest_of_an_unknown_manifest_version_is_refused() {
    let work = temp_dir();
    let mut manifest = fixture_with_manifest(work.path());
    manifest["manifest_version"] = serde_json::json!(7);
    std::fs::write(
        work.path().join("full.dump.manifest.json"),
        manifest.to_string(),
    )
    .expect("write");
    let out = ankus_in(work.path(), &["backup", "verify", "full.dump"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("manifest_version is 7; this ankus reads version 1"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_fifo_or_oversized_manifest_is_refused_instead_of_read() {
    let work = temp_dir();
    fixture_with_manifest(work.path());
    let manifest = work.path().join("full.dump.manifest.json");
    std::fs::remove_file(&manifest).expect("remove");
    let made = Command::new("mkfifo")
        .arg(&manifest)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let out = ankus_in(work.path(), &["backup", "verify", "full.dump"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("is not a regular file"),
        "{}",
        out.stderr
    );

    std::fs::remove_file(&manifest).expect("remove");
    // Valid JSON that never ends within the limit: whitespace, then a manifest.
    let mut huge = vec![b' '; 2 << 20];
    huge.extend_from_slice(b"{}");
    std::fs::write(&manifest, &huge).expect("write");
    let out = ankus_in(work.path(), &["backup", "verify", "full.dump"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("is larger than 1048576 bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn backup_write_to_an_s3_url_uploads_the_dump_and_its_manifest() {
    let work = temp_dir();
    let server = S3Server::start(&["backups"]);
    let script = write(
        work.path(),
        "write.rhai",
        &format!(
            "let s = backup::open({:?}).drop_kinds([\"job\"]).write(\"s3://backups/slim.dump\"); \
             let v = backup::open(\"s3://backups/slim.dump\").verify(); \
             #{{ records: s.inventory.records, verified: v.inventory.records, manifest: v.manifest }}",
            fixture().display()
        ),
    );
    let mut command = Command::new(crate::support::ankus_bin());
    command
        .args([
            "run",
            script.to_str().expect("utf-8"),
            "--yes",
            "--output",
            "json",
            "-q",
        ])
        .current_dir(work.path())
        .env_remove("ANKUS_SCRIPTS");
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    for (name, value) in server.env() {
        command.env(name, value);
    }
    let out: Outcome = command.output().expect("ankus runs").into();
    ok(&out, "write to S3");
    let document: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        document["result"],
        serde_json::json!({"records": 621, "verified": 621, "manifest": "checked"})
    );
    assert_eq!(
        server.bucket_files("backups"),
        ["slim.dump", "slim.dump.manifest.json"]
    );
}

#[test]
fn a_manifest_upload_that_fails_leaves_no_dump_in_the_bucket() {
    let work = temp_dir();
    let server = S3Server::start(&["backups"]);
    // A directory where s3s-fs would store the manifest: its upload fails after the dump's.
    std::fs::create_dir_all(server.root.path().join("backups/slim.dump.manifest.json"))
        .expect("mkdir");
    let script = write(
        work.path(),
        "write.rhai",
        &format!(
            "backup::open({:?}).write(\"s3://backups/slim.dump\"); ()",
            fixture().display()
        ),
    );
    let mut command = Command::new(crate::support::ankus_bin());
    command
        .args(["run", script.to_str().expect("utf-8"), "--yes"])
        .current_dir(work.path())
        .env_remove("ANKUS_SCRIPTS");
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    for (name, value) in server.env() {
        command.env(name, value);
    }
    let out: Outcome = command.output().expect("ankus runs").into();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("slim.dump.manifest.json"),
        "{}",
        out.stderr
    );
    assert_eq!(
        server.bucket_files("backups"),
        Vec::<String>::new(),
        "no dump without its manifest"
    );
}
