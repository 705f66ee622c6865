//! The backup format against the real 1.11 dump and a corpus of corrupt dumps: what
//! `ankus backup inspect|verify` reports, and that re-encoding reproduces pachctl's bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use ankus::backup::reader::RecordReader;
use ankus::backup::wire::{OpKind, OpVersion, wrap};
use ankus::backup::writer::RecordWriter;
use prost::Message;

use crate::support::{ankus_in, temp_dir};

/// The real `pachctl extract` output from a 1.11.9 cluster.
pub fn fixture() -> PathBuf {
    crate::support::fixture_dump()
}

pub fn decompressed(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    snap::read::FrameDecoder::new(std::fs::File::open(path).expect("open"))
        .read_to_end(&mut out)
        .expect("decompress");
    out
}

#[test]
fn inspect_reports_exactly_the_fixture_contents() {
    let dir = temp_dir();
    let out = ankus_in(
        dir.path(),
        &[
            "backup",
            "inspect",
            fixture().to_str().expect("utf-8"),
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let inventory: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(inventory["format"], "snappy");
    assert_eq!(inventory["records"], 631);
    assert_eq!(inventory["versions"], serde_json::json!({"1.11": 631}));
    assert_eq!(
        inventory["kinds"],
        serde_json::json!({
            "check_auth_token": 1, "activate_enterprise": 1, "activate_auth": 1,
            "restore_auth_token": 1, "set_cluster_role_binding": 1, "set_auth_config": 1,
            "set_acl": 5, "block": 378, "create_object": 149, "tag": 40, "repo": 5,
            "commit": 28, "branch": 8, "pipeline": 2, "job": 10
        })
    );
    let repos: Vec<(String, u64)> = inventory["repos"]
        .as_array()
        .expect("repos")
        .iter()
        .map(|repo| {
            (
                repo["name"].as_str().expect("name").to_owned(),
                repo["commits"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(
        repos,
        [
            ("__spec__", 2),
            ("left", 3),
            ("right", 3),
            ("copy", 10),
            ("sort", 10)
        ]
        .map(|(name, commits)| (name.to_owned(), commits))
    );
    let mut heads = Vec::new();
    for repo in inventory["repos"].as_array().expect("repos") {
        for branch in repo["branches"].as_array().expect("branches") {
            heads.push(format!(
                "{}@{}={}",
                repo["name"].as_str().expect("name"),
                branch["name"].as_str().expect("name"),
                branch["head"].as_str().expect("head")
            ));
        }
    }
    heads.sort();
    assert_eq!(
        heads,
        [
            "__spec__@copy=48d8ce104fe9442697c5e1e5f30d40f7",
            "__spec__@sort=dec8bc2b235e4dd18257e025edfec4c1",
            "copy@master=f2d88edec5d7447eb47c250519e91669",
            "copy@stats=c343fe6764314a4a9ff7731381a87b1f",
            "left@master=37460f1a7b244791881e8f92b7c30898",
            "right@master=60d67860bc1241a89b193409891581a0",
            "sort@master=f7fc16d292df431f80decbec1add81e7",
            "sort@stats=a9813f5c8e1b40bd80704919749ae081",
        ]
    );
    assert_eq!(
        inventory["pipelines"],
        serde_json::json!([
            {"name": "copy", "image": "ubuntu:16.04", "inputs": ["left", "right"],
             "spec_commit": "__spec__@48d8ce104fe9442697c5e1e5f30d40f7"},
            {"name": "sort", "image": "ubuntu:16.04", "inputs": ["copy"],
             "spec_commit": "__spec__@dec8bc2b235e4dd18257e025edfec4c1"}
        ])
    );
    assert_eq!(inventory["jobs"], 10);
    assert_eq!(
        inventory["objects"],
        serde_json::json!({"blocks": 209, "block_bytes": 224412, "objects": 149, "tags": 40})
    );
    assert_eq!(
        inventory["auth"],
        serde_json::json!({"active": true, "acls": 5, "tokens": 1, "role_bindings": 1, "enterprise": true})
    );
}

#[test]
fn verify_accepts_the_fixture_with_zero_unknown_fields() {
    let dir = temp_dir();
    let out = ankus_in(
        dir.path(),
        &[
            "backup",
            "verify",
            fixture().to_str().expect("utf-8"),
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(report["unknown_fields"], 0);
    assert_eq!(report["source_bytes"], 111203);
    assert_eq!(report["manifest"], "absent");
}

#[test]
fn decode_encode_compress_reproduces_the_decompressed_stream() {
    let original = decompressed(&fixture());
    let reader = RecordReader::new(std::fs::File::open(fixture()).expect("open")).expect("reader");
    let mut writer = RecordWriter::new(Vec::new());
    let pool = ankus::proto::pool();
    let op_descriptor = pool.get_message_by_name("admin.Op").expect("admin.Op");
    for record in reader {
        let record = record.expect("record");
        let decoded =
            prost_reflect::DynamicMessage::decode(op_descriptor.clone(), record.bytes.as_slice())
                .expect("decodes");
        writer
            .write_record(&decoded.encode_to_vec())
            .expect("write");
    }
    let (_, _, compressed) = writer.finish().expect("finish");
    let mut again = Vec::new();
    snap::read::FrameDecoder::new(compressed.as_slice())
        .read_to_end(&mut again)
        .expect("decompress");
    assert_eq!(again.len(), original.len());
    assert!(
        again == original,
        "re-encoded stream differs from pachctl's"
    );
}

/// Writes records (already-serialized ops) as a snappy dump.
pub fn dump_of(ops: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = RecordWriter::new(Vec::new());
    for op in ops {
        writer.write_record(op).expect("write");
    }
    writer.finish().expect("finish").2
}

pub fn repo_op(version: OpVersion, name: &str) -> Vec<u8> {
    let request = ankus::proto::pfs::CreateRepoRequest {
        repo: Some(ankus::proto::pfs::Repo { name: name.into() }),
        ..Default::default()
    };
    wrap(version, OpKind::Repo, &request.encode_to_vec())
}

fn verify_bytes(name: &str, bytes: &[u8]) -> crate::support::Outcome {
    let dir = temp_dir();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    ankus_in(
        dir.path(),
        &["backup", "verify", path.to_str().expect("utf-8")],
    )
}

fn assert_rejected(name: &str, bytes: &[u8], expected: &[&str]) {
    let out = verify_bytes(name, bytes);
    assert_eq!(out.code, 1, "{name}: {out:?}");
    for fragment in expected {
        assert!(
            out.stderr.contains(fragment),
            "{name}: {:?} lacks {fragment:?}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
    assert!(out.stdout.is_empty(), "{name}: nothing on stdout");
}

#[test]
fn truncation_mid_record_names_record_and_offset_at_every_cut() {
    let raw = decompressed(&fixture());
    // Record boundaries of the decompressed stream.
    let mut boundaries = vec![0usize];
    let mut at = 0usize;
    while at < raw.len() {
        let length = i64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes")) as usize;
        at += 8 + length;
        boundaries.push(at);
    }
    assert_eq!(boundaries.len(), 632);
    // Cut inside the length prefix and inside the payload of a sample of records spread over the
    // whole dump (every 25th record keeps the test quick; each cut spawns one verify).
    for (index, window) in boundaries.windows(2).enumerate().step_by(25) {
        let (start, end) = (window[0], window[1]);
        for cut in [start + 3, (start + 8 + end) / 2] {
            if cut >= end {
                continue;
            }
            let bytes = dump_of_raw(&raw[..cut]);
            assert_rejected(
                "cut.dump",
                &bytes,
                &[
                    "dump is truncated",
                    &format!("record {index} at byte offset {start}"),
                ],
            );
        }
    }
}

/// Compresses a raw (possibly cut) record stream without looking at it.
pub fn dump_of_raw(raw: &[u8]) -> Vec<u8> {
    let mut encoder = snap::write::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut encoder, raw).expect("write");
    encoder.into_inner().expect("flush")
}

#[test]
fn truncation_at_a_record_boundary_is_caught_by_the_manifest() {
    let dir = temp_dir();
    let ops: Vec<Vec<u8>> = (0..5)
        .map(|n| repo_op(OpVersion::V1_13, &format!("r{n}")))
        .collect();
    let full = dump_of(&ops);
    let path = dir.path().join("b.dump");
    std::fs::write(&path, &full).expect("write");
    // A manifest as ankus writes it, then the dump loses its last records.
    let manifest = serde_json::json!({
        "manifest_version": 1, "file": "b.dump",
        "sha256": sha256_hex(&full), "bytes": full.len(), "records": 5,
        "versions": {"1.13": 5}, "kinds": {"repo": 5},
        "source": {}, "created_at": "2026-01-01T00:00:00Z", "ankus_version": "test"
    });
    std::fs::write(
        dir.path().join("b.dump.manifest.json"),
        manifest.to_string(),
    )
    .expect("write");
    let ok = ankus_in(dir.path(), &["backup", "verify", "b.dump"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("manifest checked"), "{}", ok.stdout);
    for keep in 0..5 {
        std::fs::write(&path, dump_of(&ops[..keep])).expect("write");
        let out = ankus_in(dir.path(), &["backup", "verify", "b.dump"]);
        assert_eq!(out.code, 1, "{keep}: {out:?}");
        assert!(
            out.stderr.contains("does not match its manifest"),
            "{}",
            out.stderr
        );
        assert!(
            out.stderr
                .contains(&format!("{keep} records, manifest says 5")),
            "{}",
            out.stderr
        );
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn flipped_bytes_in_compressed_and_stored_chunks_fail_the_checksum() {
    let original = std::fs::read(fixture()).expect("read");
    // The fixture's second chunk starts at byte 10 (after the stream identifier): flip a byte of
    // its compressed payload.
    let mut flipped = original.clone();
    flipped[10 + 8 + 40] ^= 0x5a;
    assert_rejected(
        "flip-compressed.dump",
        &flipped,
        &["dump is corrupt near record 0"],
    );

    // Incompressible data makes the encoder store chunks uncompressed (type 0x01).
    let mut noise = vec![0u8; 70_000];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for byte in &mut noise {
        // xorshift64*: enough entropy that snappy gives up and stores the chunk.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        *byte = (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
    }
    let request = ankus::proto::pfs::PutBlockRequest {
        block: Some(ankus::proto::pfs::Block { hash: "b1".into() }),
        value: noise,
    };
    let bytes = dump_of(&[wrap(
        OpVersion::V1_13,
        OpKind::Block,
        &request.encode_to_vec(),
    )]);
    assert_eq!(bytes[10], 0x01, "first data chunk is stored");
    let mut flipped = bytes.clone();
    flipped[10 + 8 + 100] ^= 0x01;
    assert_rejected(
        "flip-stored.dump",
        &flipped,
        &["dump is corrupt", "record 0"],
    );
}

#[test]
fn wrong_stream_identifier_is_named() {
    let mut bytes = std::fs::read(fixture()).expect("read");
    bytes[9] = b'X';
    assert_rejected(
        "wrong-id.dump",
        &bytes,
        &[
            "wrong snappy stream identifier",
            "record 0 at byte offset 0",
        ],
    );
}

#[test]
fn huge_and_negative_length_prefixes_are_refused() {
    for (name, length) in [
        ("huge", 1i64 << 62),
        ("negative", -1),
        ("over-limit", (20 << 20) + 1),
    ] {
        let mut raw = repo_op(OpVersion::V1_13, "ok").len().to_le_bytes().to_vec();
        raw.extend(repo_op(OpVersion::V1_13, "ok"));
        let second_offset = raw.len();
        raw.extend(length.to_le_bytes());
        raw.extend([0u8; 16]);
        assert_rejected(
            name,
            &dump_of_raw(&raw),
            &[
                "invalid length prefix",
                &format!("record 1 at byte offset {second_offset}"),
            ],
        );
    }
}

#[test]
fn records_that_are_not_ops_are_refused() {
    let good = repo_op(OpVersion::V1_13, "a");
    let mut raw = Vec::new();
    for op in [good.clone(), b"\x08\x96\x01not an op".to_vec()] {
        raw.extend((op.len() as i64).to_le_bytes());
        raw.extend(op);
    }
    assert_rejected(
        "garbage.dump",
        &dump_of_raw(&raw),
        &["record 1 at byte offset", "is not a pachd admin.Op"],
    );
    // An empty Op: no version field.
    let mut raw = Vec::new();
    raw.extend(0i64.to_le_bytes());
    assert_rejected(
        "noversion.dump",
        &dump_of_raw(&raw),
        &["record 0 at byte offset 0 has no op version set"],
    );
    // A valid frame whose inner request does not decode as its message type.
    let broken = wrap(OpVersion::V1_13, OpKind::Repo, b"\x0a\x05\x0a\x09abc");
    assert_rejected(
        "badinner.dump",
        &dump_of(&[broken]),
        &["record 0", "does not decode"],
    );
}

#[test]
fn mixed_versions_are_refused() {
    let bytes = dump_of(&[
        repo_op(OpVersion::V1_11, "a"),
        repo_op(OpVersion::V1_12, "b"),
    ]);
    assert_rejected(
        "mixed.dump",
        &bytes,
        &[
            "record 1 at byte offset",
            "is an op1.12 record in a dump of op1.11 records",
        ],
    );
}

#[test]
fn duplicate_ops_are_refused() {
    let bytes = dump_of(&[
        repo_op(OpVersion::V1_13, "a"),
        repo_op(OpVersion::V1_13, "a"),
    ]);
    assert_rejected("dup.dump", &bytes, &["record 1", "duplicate repo 'a'"]);
}

#[test]
fn uncompressed_record_streams_are_read_too() {
    let mut raw = Vec::new();
    for name in ["x", "y"] {
        let op = repo_op(OpVersion::V1_10, name);
        raw.extend((op.len() as i64).to_le_bytes());
        raw.extend(op);
    }
    let out = verify_bytes("raw.dump", &raw);
    assert_eq!(out.code, 0, "{out:?}");
    let dir = temp_dir();
    let path = dir.path().join("raw.dump");
    std::fs::write(&path, &raw).expect("write");
    let inspect = ankus_in(
        dir.path(),
        &["backup", "inspect", "raw.dump", "--output", "json"],
    );
    let inventory: serde_json::Value = serde_json::from_str(&inspect.stdout).expect("json");
    assert_eq!(inventory["format"], "raw");
    assert_eq!(inventory["records"], 2);
    assert_eq!(inventory["versions"]["1.10"], 2);
}
