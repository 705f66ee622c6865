//! The sandbox's pachd 1.9.0 extracts what the real pachd 1.9.0 extracts, byte for byte. One
//! dump made by a real pachd (filled by the real pachctl) is restored into the sandbox and
//! into a second real pachd, and `pachctl extract` of the two must be the same bytes.
//! (Filling both servers through pachctl instead could not give the same dump: commit IDs are
//! random, and the sandbox writes tree objects of its own encoding.)

use std::collections::BTreeSet;
use std::path::Path;

use ankus::backup::Location;
use ankus::backup::reader::RecordReader;
use ankus::backup::transfer::{Progress, RestoreOptions, restore_from};
use ankus::proto::admin;
use prost::Message;
use sha2::{Digest, Sha512};

use crate::conformance::{Peer, Server};
use crate::real_pachd::pachctl_bin;
use crate::support::{noise, temp_dir};

/// Fills `peer` through the real pachctl: `images` (described) with three commits on master,
/// the third holding a 5 MB file (three object ops), and `dev` forked from the first commit
/// with a commit of its own; `labels` with one commit; `empty` with none.
async fn fill_repos(peer: &Peer) {
    let dir = temp_dir();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write file");
        path.to_str().expect("utf-8").to_owned()
    };
    peer.pachctl(&["create", "repo", "images", "-d", "the images"])
        .await;
    let put = |target: &'static str, path: String| async move {
        peer.pachctl(&["put", "file", target, "-f", &path]).await;
    };
    put("images@master:/a.txt", file("a", b"hello\n")).await;
    let first = peer
        .client()
        .await
        .list_commits("images", None, 0)
        .await
        .expect("list commits")[0]
        .id
        .clone();
    put("images@master:/b/c.bin", file("c", &noise(100_000, 7))).await;
    put("images@master:/big.bin", file("big", &noise(5_000_000, 3))).await;
    peer.pachctl(&["create", "branch", "images@dev", "--head", &first])
        .await;
    put("images@dev:/d.txt", file("d", b"dev\n")).await;
    peer.pachctl(&["create", "repo", "labels"]).await;
    put("labels@master:/l.csv", file("l", b"id,label\n1,cat\n")).await;
    peer.pachctl(&["create", "repo", "empty"]).await;
}

/// Pipelines `edges` (reads `images`) and `stats` (reads `labels`), through the real pachctl.
async fn create_pipelines(peer: &Peer) {
    let dir = temp_dir();
    for (name, input) in [("edges", "images"), ("stats", "labels")] {
        let spec = serde_json::json!({
            "pipeline": { "name": name },
            "transform": {
                "image": "ubuntu:16.04",
                "cmd": ["/bin/bash"],
                "stdin": [format!("cp /pfs/{input}/* /pfs/out/")],
            },
            "input": { "pfs": { "repo": input, "glob": "/*" } },
        });
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, spec.to_string()).expect("write spec");
        peer.pachctl(&["create", "pipeline", "-f", path.to_str().expect("utf-8")])
            .await;
    }
}

/// The bytes the real pachctl writes for `pachctl ARGS` against `peer` (`extract ...`).
async fn pachctl_bytes(peer: &Peer, args: &[&str]) -> Vec<u8> {
    let address = peer.address.clone();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let home = tempfile::tempdir().expect("temp dir");
        let config = home.path().join("config.json");
        std::fs::write(&config, r#"{"user_id":"ankus-tests","v1":{}}"#).expect("write config");
        let output = std::process::Command::new(pachctl_bin())
            .args(&args)
            .env_remove("PACH_CONTEXT")
            .env("PACHD_ADDRESS", &address)
            .env("HOME", home.path())
            .env("PACH_CONFIG", &config)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("pachctl runs");
        assert!(
            output.status.success(),
            "pachctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    })
    .await
    .expect("joins")
}

/// `pachctl restore` of `dump` into `peer`.
async fn pachctl_restore(peer: &Peer, dump: &[u8]) {
    let out = peer.pachctl_with(&["restore"], Some(dump.to_vec())).await;
    assert_eq!(
        out.code, 0,
        "pachctl restore into {:?}: {out:?}",
        peer.server
    );
}

/// ankus's restore of `dump` into `peer`.
async fn ankus_restore(peer: &Peer, dump: &[u8], dir: &Path) {
    let path = dir.join(format!("restore-{}.dump", peer.address.replace(':', "-")));
    std::fs::write(&path, dump).expect("write dump");
    restore_from(
        &peer.client().await,
        &Location::File(path),
        None,
        &Progress::default(),
        &RestoreOptions::default(),
    )
    .await
    .unwrap_or_else(|error| panic!("ankus restore into {:?}: {error}", peer.server));
}

/// The records of a dump, in order.
fn records(dump: &[u8]) -> Vec<Vec<u8>> {
    RecordReader::new(std::io::Cursor::new(dump.to_vec()))
        .expect("a dump")
        .map(|record| record.expect("a record").bytes)
        .collect()
}

/// The `Op1_9` of a record.
fn op(record: &[u8]) -> admin::Op19 {
    admin::Op::decode(record)
        .expect("an op")
        .op1_9
        .expect("a 1.9 op")
}

/// The records grouped as pachd 1.9.0 writes them: each object's run of object ops (up to
/// and with the empty one) with the SHA-512 of its bytes, every other op alone.
fn runs(dump: &[u8]) -> Vec<(Option<String>, Vec<Vec<u8>>)> {
    let mut runs = Vec::new();
    let (mut open, mut hasher) = (Vec::new(), Sha512::new());
    for record in records(dump) {
        let Some(object) = op(&record).object else {
            runs.push((None, vec![record]));
            continue;
        };
        hasher.update(&object.value);
        open.push(record);
        if object.value.is_empty() {
            let hash = hex::encode(std::mem::take(&mut hasher).finalize());
            runs.push((Some(hash), std::mem::take(&mut open)));
        }
    }
    assert!(open.is_empty(), "the last object run has no empty op");
    runs
}

/// The objects a dump carries.
fn object_hashes(dump: &[u8]) -> BTreeSet<String> {
    runs(dump)
        .into_iter()
        .filter_map(|(hash, _)| hash)
        .collect()
}

/// The records of `dump` without the objects `known` lacks, and how many objects those were.
fn without_new_objects(dump: &[u8], known: &BTreeSet<String>) -> (Vec<Vec<u8>>, usize) {
    let mut dropped = 0;
    let mut kept = Vec::new();
    for (hash, records) in runs(dump) {
        match hash {
            Some(hash) if !known.contains(&hash) => dropped += 1,
            _ => kept.extend(records),
        }
    }
    (kept, dropped)
}

/// One line per record, for a readable failure.
fn describe(records: &[Vec<u8>]) -> Vec<String> {
    records
        .iter()
        .map(|record| {
            let op = op(record);
            match &op.object {
                Some(object) => format!("object value of {} bytes", object.value.len()),
                None => {
                    let text = format!("{op:?}");
                    text.chars().take(300).collect()
                }
            }
        })
        .collect()
}

/// Fails with the first differing op unless the two record lists are the same.
fn assert_same_records(sandbox: &[Vec<u8>], real: &[Vec<u8>], what: &str) {
    if sandbox == real {
        return;
    }
    let (ours, theirs) = (describe(sandbox), describe(real));
    let at = (ours.iter().zip(&theirs))
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len().min(theirs.len()));
    panic!(
        "{what}: the sandbox's dump has {} ops, the real pachd's {}; first difference at op \
         {at}:\n  sandbox: {:?}\n  real:    {:?}\nsandbox ops:\n{}\nreal ops:\n{}",
        ours.len(),
        theirs.len(),
        ours.get(at),
        theirs.get(at),
        ours.join("\n"),
        theirs.join("\n"),
    );
}

fn assert_same_dump(sandbox: &[u8], real: &[u8], what: &str) {
    assert_same_records(&records(sandbox), &records(real), what);
    assert!(sandbox == real, "{what}: same ops, different bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_1_9_0_extract_of_a_restored_real_dump_is_byte_identical_to_a_real_pachds() {
    let source = Peer::start(Server::Real).await;
    fill_repos(&source).await;
    let dump = pachctl_bytes(&source, &["extract"]).await;
    let real = Peer::start(Server::Real).await;
    let sandbox = Peer::start(Server::Sandbox).await;
    // One client each: pachctl into the real pachd, ankus into the sandbox.
    let dir = temp_dir();
    pachctl_restore(&real, &dump).await;
    ankus_restore(&sandbox, &dump, dir.path()).await;
    let mut extracted = Vec::new();
    for args in [&["extract"][..], &["extract", "--no-objects"][..]] {
        let from_sandbox = pachctl_bytes(&sandbox, args).await;
        let from_real = pachctl_bytes(&real, args).await;
        assert_same_dump(&from_sandbox, &from_real, &format!("pachctl {args:?}"));
        extracted.push(from_sandbox);
    }
    let inventory = ankus::backup::verify::verify_bytes(&extracted[0])
        .expect("verifies")
        .inventory;
    let kinds: Vec<&str> = inventory.kinds.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["branch", "commit", "object", "repo"],
        "{inventory:?}"
    );
    let repos: Vec<&str> = (inventory.repos.iter())
        .map(|repo| repo.name.as_str())
        .collect();
    assert_eq!(repos, ["images", "labels", "empty"], "newest first");
    let values: Vec<usize> = (records(&extracted[0]).iter())
        .filter_map(|record| op(record).object.map(|object| object.value.len()))
        .filter(|len| *len > 1 << 20)
        .collect();
    assert_eq!(values, [2 << 20, 2 << 20], "the 5 MB file in 2 MiB ops");

    // The real pachd takes the sandbox's dump (through ankus) and extracts the source's dump
    // again: a restore creates repos and branches in dump order and Extract lists them
    // newest first, so a second restore puts the order back.
    let back = Peer::start(Server::Real).await;
    ankus_restore(&back, &extracted[0], dir.path()).await;
    let again = pachctl_bytes(&back, &["extract"]).await;
    assert_same_dump(&again, &dump, "real pachd restored from the sandbox's dump");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_1_9_0_extract_with_pipelines_matches_a_real_pachds_but_for_new_spec_objects() {
    let source = Peer::start(Server::Real).await;
    fill_repos(&source).await;
    create_pipelines(&source).await;
    let dump = pachctl_bytes(&source, &["extract"]).await;
    let real = Peer::start(Server::Real).await;
    let sandbox = Peer::start(Server::Sandbox).await;
    pachctl_restore(&real, &dump).await;
    pachctl_restore(&sandbox, &dump).await;
    let args = ["extract", "--no-objects"];
    let from_sandbox = pachctl_bytes(&sandbox, &args).await;
    let from_real = pachctl_bytes(&real, &args).await;
    assert_same_dump(&from_sandbox, &from_real, "pachctl extract --no-objects");
    let inventory = ankus::backup::verify::verify_bytes(&from_sandbox)
        .expect("verifies")
        .inventory;
    let kinds: Vec<&str> = inventory.kinds.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["branch", "commit", "pipeline", "repo"],
        "{inventory:?}"
    );
    let repos: Vec<&str> = (inventory.repos.iter())
        .map(|repo| repo.name.as_str())
        .collect();
    assert_eq!(repos, ["images", "labels", "empty"], "input repos only");

    // Restoring a pipeline writes a new spec commit (the spec and its tree): the real
    // pachd's hold a new random salt, the sandbox's are in its own encoding, so neither
    // matches anything. Every other op must.
    let known = object_hashes(&dump);
    let (sandbox_kept, sandbox_new) =
        without_new_objects(&pachctl_bytes(&sandbox, &["extract"]).await, &known);
    let (real_kept, real_new) =
        without_new_objects(&pachctl_bytes(&real, &["extract"]).await, &known);
    assert_eq!(
        (sandbox_new, real_new),
        (4, 4),
        "a spec and a tree per pipeline"
    );
    assert_same_records(
        &sandbox_kept,
        &real_kept,
        "pachctl extract, new spec objects left out",
    );
}
