//! Hostile input: every class of corrupt dump is refused by `restore` with the record and
//! offset named and not one op sent to pachd; the fuzz targets' bodies run over the seed
//! corpus (and the fixture) plus deterministic mutations, so they are exercised even where
//! cargo-fuzz is not installed.

use std::path::{Path, PathBuf};

use ankus::backup::fuzz::{dump_reader, op_decoder};
use ankus::backup::reader::RecordReader;
use ankus::backup::wire::{OpKind, OpVersion, wrap};
use prost::Message;

use crate::backup::{decompressed, dump_of, dump_of_raw, fixture, repo_op};
use crate::faults::serve;
use crate::support::{ankus_async, pach_config, temp_dir, write};

/// Record boundaries of a decompressed stream.
fn boundaries(raw: &[u8]) -> Vec<usize> {
    let mut out = vec![0usize];
    let mut at = 0usize;
    while at < raw.len() {
        let length = i64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes")) as usize;
        at += 8 + length;
        out.push(at);
    }
    out
}

fn noise(length: usize, mut state: u64) -> Vec<u8> {
    (0..length)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// (name, dump bytes, fragments the error must show) for every corrupt class.
fn corrupt_corpus() -> Vec<(&'static str, Vec<u8>, Vec<String>)> {
    let raw = decompressed(&fixture());
    let bounds = boundaries(&raw);
    let original = std::fs::read(fixture()).expect("read fixture");
    let mut corpus = Vec::new();

    let (start, end) = (bounds[100], bounds[101]);
    corpus.push((
        "truncated mid-record",
        dump_of_raw(&raw[..(start + 8 + end) / 2]),
        vec![
            "dump is truncated".into(),
            format!("record 100 at byte offset {start}"),
        ],
    ));
    corpus.push((
        "truncated in a length prefix",
        dump_of_raw(&raw[..start + 3]),
        vec![
            "dump is truncated".into(),
            format!("record 100 at byte offset {start}"),
        ],
    ));
    // Record 1 is the first block's data: a cut after it leaves the block open.
    corpus.push((
        "truncated at a record boundary",
        dump_of_raw(&raw[..bounds[2]]),
        vec![
            format!("record 2 at byte offset {}", bounds[2]),
            "dump ends inside block".into(),
        ],
    ));

    let mut flipped = original.clone();
    flipped[10 + 8 + 40] ^= 0x5a;
    corpus.push((
        "flipped byte in a compressed chunk",
        flipped,
        vec!["dump is corrupt near record 0".into()],
    ));
    let request = ankus::proto::pfs::PutBlockRequest {
        block: Some(ankus::proto::pfs::Block { hash: "b1".into() }),
        value: noise(70_000, 0x9e37_79b9_7f4a_7c15),
    };
    let stored = dump_of(&[wrap(
        OpVersion::V1_13,
        OpKind::Block,
        &request.encode_to_vec(),
    )]);
    assert_eq!(stored[10], 0x01, "the first data chunk is stored");
    let mut flipped = stored;
    flipped[10 + 8 + 100] ^= 0x01;
    corpus.push((
        "flipped byte in a stored chunk",
        flipped,
        vec!["dump is corrupt".into(), "record 0".into()],
    ));

    let mut wrong_id = original;
    wrong_id[9] = b'X';
    corpus.push((
        "wrong stream identifier",
        wrong_id,
        vec![
            "wrong snappy stream identifier".into(),
            "record 0 at byte offset 0".into(),
        ],
    ));

    for (name, length) in [
        ("huge length prefix", 1i64 << 62),
        ("negative length prefix", -1),
    ] {
        let op = repo_op(OpVersion::V1_13, "ok");
        let mut raw = (op.len() as i64).to_le_bytes().to_vec();
        raw.extend(&op);
        let second = raw.len();
        raw.extend(length.to_le_bytes());
        raw.extend([0u8; 16]);
        corpus.push((
            name,
            dump_of_raw(&raw),
            vec![
                "invalid length prefix".into(),
                format!("record 1 at byte offset {second}"),
            ],
        ));
    }

    let mut raw = Vec::new();
    for op in [
        repo_op(OpVersion::V1_13, "a"),
        b"\x08\x96\x01not an op".to_vec(),
    ] {
        raw.extend((op.len() as i64).to_le_bytes());
        raw.extend(op);
    }
    corpus.push((
        "a valid frame holding non-Op bytes",
        dump_of_raw(&raw),
        vec![
            "record 1 at byte offset".into(),
            "is not a pachd admin.Op".into(),
        ],
    ));
    corpus.push((
        "an op whose request does not decode",
        dump_of(&[wrap(OpVersion::V1_13, OpKind::Repo, b"\x0a\x05\x0a\x09abc")]),
        vec!["record 0".into(), "does not decode".into()],
    ));
    corpus.push((
        "mixed versions",
        dump_of(&[
            repo_op(OpVersion::V1_11, "a"),
            repo_op(OpVersion::V1_12, "b"),
        ]),
        vec![
            "record 1 at byte offset".into(),
            "is an op1.12 record in a dump of op1.11 records".into(),
        ],
    ));
    corpus.push((
        "duplicate ops",
        dump_of(&[
            repo_op(OpVersion::V1_13, "a"),
            repo_op(OpVersion::V1_13, "a"),
        ]),
        vec!["record 1".into(), "duplicate repo 'a'".into()],
    ));
    corpus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_dumps_are_refused_by_restore_with_zero_ops_sent() {
    let served = serve("1.13").await;
    let dir = temp_dir();
    let config = pach_config(
        dir.path(),
        &[("t", &format!("grpc://{}", served.address), None)],
    );
    write(
        dir.path(),
        "restore.rhai",
        r#"pachd::connect("t").restore(arg("dump"), #{ force: true });"#,
    );
    for (name, bytes, expected) in corrupt_corpus() {
        std::fs::write(dir.path().join("bad.dump"), &bytes).expect("write dump");
        let out = ankus_async(
            dir.path(),
            &config,
            &["run", "./restore.rhai", "-a", "dump=bad.dump"],
            &[],
        )
        .await;
        assert_eq!(out.code, 1, "{name}: {out:?}");
        for fragment in expected
            .iter()
            .map(String::as_str)
            .chain(["failed verification; no op was sent to pachd"])
        {
            assert!(
                out.stderr.contains(fragment),
                "{name}: {:?} lacks {fragment:?}",
                out.stderr
            );
        }
        assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
        assert_eq!(
            served.cluster.restore_ops_received(),
            0,
            "{name}: no op reached pachd"
        );
        assert!(served.cluster.lock().repos.is_empty(), "{name}");
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The seeds committed under `fuzz/corpus/` (the fixture is added at run time: it is shared
/// test data, not ours to copy).
fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let mut raw = Vec::new();
    for name in ["x", "y"] {
        let op = repo_op(OpVersion::V1_10, name);
        raw.extend((op.len() as i64).to_le_bytes());
        raw.extend(op);
    }
    seeds.push(("dump_reader", "raw-1.10.dump".to_owned(), raw));
    let block = |value: Vec<u8>| {
        let request = ankus::proto::pfs::PutBlockRequest {
            block: Some(ankus::proto::pfs::Block { hash: "b1".into() }),
            value,
        };
        wrap(OpVersion::V1_13, OpKind::Block, &request.encode_to_vec())
    };
    seeds.push((
        "dump_reader",
        "snappy-1.13.dump".to_owned(),
        dump_of(&[
            repo_op(OpVersion::V1_13, "images"),
            block(b"some block data".to_vec()),
            block(Vec::new()),
            wrap(OpVersion::V1_13, OpKind::CheckAuthToken, b""),
        ]),
    ));
    seeds.push((
        "dump_reader",
        "stored-chunk.dump".to_owned(),
        dump_of(&[block(noise(2_000, 7)), block(Vec::new())]),
    ));
    for version in [
        OpVersion::V1_7,
        OpVersion::V1_9,
        OpVersion::V1_11,
        OpVersion::V1_13,
    ] {
        for kind in OpKind::ALL {
            if kind.exists_in(version) {
                seeds.push((
                    "op_decoder",
                    format!("{}-{}.op", version.as_str(), kind.as_str()),
                    wrap(version, kind, b""),
                ));
            }
        }
        seeds.push((
            "op_decoder",
            format!("{}-repo-named.op", version.as_str()),
            repo_op(version, "images"),
        ));
    }
    seeds
}

#[test]
fn fuzz_seed_corpus_is_what_its_generator_makes() {
    let bless = std::env::var_os("ANKUS_BLESS").is_some();
    for (target, name, bytes) in generated_seeds() {
        let path = corpus_dir(target).join(&name);
        if bless {
            std::fs::create_dir_all(corpus_dir(target)).expect("mkdir");
            std::fs::write(&path, &bytes).expect("write seed");
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == bytes,
            "{} differs from its generator; re-bless with ANKUS_BLESS=1 cargo test --test it fuzz_seed",
            path.display()
        );
    }
}

/// Deterministic mutations of `seed`: flipped bytes, truncations, duplicated and removed
/// ranges, and overwritten length-like words.
fn mutations(seed: &[u8], count: usize, mut state: u64) -> Vec<Vec<u8>> {
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::new();
    for round in 0..count {
        let mut bytes = seed.to_vec();
        if bytes.is_empty() {
            bytes.push(next() as u8);
        }
        let at = next() as usize % bytes.len();
        match round % 5 {
            0 => bytes[at] ^= 1 << (next() % 8),
            1 => bytes.truncate(at),
            2 => {
                let end = (at + 1 + next() as usize % 64).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            3 => {
                let end = (at + 1 + next() as usize % 64).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                let word = next().to_le_bytes();
                let end = (at + 8).min(bytes.len());
                bytes[at..end].copy_from_slice(&word[..end - at]);
            }
        }
        out.push(bytes);
    }
    out
}

#[test]
fn fuzz_targets_survive_the_seed_corpus_and_its_mutations() {
    let fixture_bytes = std::fs::read(fixture()).expect("read fixture");
    let mut dump_seeds = vec![fixture_bytes.clone()];
    let mut op_seeds: Vec<Vec<u8>> = RecordReader::new(std::io::Cursor::new(fixture_bytes))
        .expect("reader")
        .map(|record| record.expect("record").bytes)
        .step_by(7)
        .collect();
    for (target, _, bytes) in generated_seeds() {
        match target {
            "dump_reader" => dump_seeds.push(bytes),
            _ => op_seeds.push(bytes),
        }
    }
    for (index, seed) in dump_seeds.iter().enumerate() {
        dump_reader(seed);
        // The fixture is big: fewer rounds keep the test quick, the small seeds get more.
        let rounds = if index == 0 { 12 } else { 300 };
        for mutated in mutations(seed, rounds, 0x1234_5678 + index as u64) {
            dump_reader(&mutated);
        }
    }
    for (index, seed) in op_seeds.iter().enumerate() {
        op_decoder(seed);
        for mutated in mutations(seed, 60, 0x9abc_def0 + index as u64) {
            op_decoder(&mutated);
        }
    }
}
