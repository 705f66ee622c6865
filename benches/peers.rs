//! Helpers for `benches/run` (not a timed test, and not meant to be run by hand):
//!
//! ```text
//! cargo bench --bench peers -- gen-dump PATH MIB         a dump of about MIB MiB of ops
//! cargo bench --bench peers -- gen-pipelines PATH COUNT  a dump of COUNT pipelines on one repo
//! cargo bench --bench peers -- floor DUMP OUT            the extract floor (see below)
//! ```
//!
//! `gen-dump` writes what a busy 1.13 cluster's `pachctl extract` holds: incompressible
//! 8 MiB blocks (each followed by the empty op that ends a block's stream), a `create_object`
//! per block, tags on some objects, three repos with chains of commits and a branch each, a few
//! pipelines and their jobs.
//!
//! `floor` reads every record of DUMP into memory first, then times only what no extract can
//! avoid once the ops are in hand: snappy framing, writing the file and fsync (bare), and the
//! same plus the sha256 ankus keeps for the manifest (`RecordWriter`). It prints one JSON line.
//!
//! A bare `cargo bench` runs this target with no subcommand; it then only says what it is.

#![expect(clippy::print_stdout, reason = "a benchmark helper reports on stdout")]

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use ankus::backup::reader::RecordReader;
use ankus::backup::writer::RecordWriter;
use ankus::proto::{admin, pfs, pps};
use ankus::sandbox::pachd::dumpfile::DumpWriter;
use rand::RngCore;
use sha2::{Digest, Sha512};

const BLOCK: usize = 8 << 20;

fn op(inner: admin::Op113) -> admin::Op {
    admin::Op {
        op1_13: Some(inner),
        ..Default::default()
    }
}

fn repo(name: &str) -> Option<pfs::Repo> {
    Some(pfs::Repo { name: name.into() })
}

fn commit(repo_name: &str, id: &str) -> Option<pfs::Commit> {
    Some(pfs::Commit {
        repo: repo(repo_name),
        id: id.into(),
    })
}

fn pipeline(name: &str, input: &str) -> admin::Op113 {
    admin::Op113 {
        pipeline: Some(pps::CreatePipelineRequest {
            pipeline: Some(pps::Pipeline { name: name.into() }),
            transform: Some(pps::Transform {
                image: "alpine:3".into(),
                cmd: vec!["sh".into()],
                stdin: vec![format!("cp -r /pfs/{input}/* /pfs/out/")],
                ..Default::default()
            }),
            input: Some(pps::Input {
                pfs: Some(pps::PfsInput {
                    repo: input.into(),
                    glob: "/*".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn create_repo(name: &str) -> admin::Op113 {
    admin::Op113 {
        repo: Some(pfs::CreateRepoRequest {
            repo: repo(name),
            description: format!("benchmark repo {name}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Writes the extract benchmark's dump; returns (ops, block bytes).
fn gen_dump(path: &Path, mib: usize) -> std::io::Result<(u64, u64)> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut writer = DumpWriter::new(file);
    let mut rng = rand::rng();
    let blocks = (mib << 20).div_ceil(BLOCK);
    let (mut ops, mut bytes) = (0u64, 0u64);
    let mut objects = Vec::new();
    let mut value = vec![0u8; BLOCK];
    for index in 0..blocks {
        let id = format!("{index:032x}");
        rng.fill_bytes(&mut value);
        objects.push((hex::encode(Sha512::digest(&value)), id.clone()));
        bytes += value.len() as u64;
        for data in [value.clone(), Vec::new()] {
            writer.write_op(&op(admin::Op113 {
                block: Some(pfs::PutBlockRequest {
                    block: Some(pfs::Block { hash: id.clone() }),
                    value: data,
                }),
                ..Default::default()
            }))?;
            ops += 1;
        }
    }
    let mut meta = Vec::new();
    for (index, (hash, id)) in objects.iter().enumerate() {
        meta.push(admin::Op113 {
            create_object: Some(pfs::CreateObjectRequest {
                object: Some(pfs::Object { hash: hash.clone() }),
                block_ref: Some(pfs::BlockRef {
                    block: Some(pfs::Block { hash: id.clone() }),
                    range: Some(pfs::ByteRange {
                        lower: 0,
                        upper: BLOCK as u64,
                    }),
                }),
            }),
            ..Default::default()
        });
        if index % 4 == 0 {
            meta.push(admin::Op113 {
                tag: Some(pfs::TagObjectRequest {
                    object: Some(pfs::Object { hash: hash.clone() }),
                    tags: vec![pfs::Tag {
                        name: format!("datum-{index:08x}"),
                    }],
                }),
                ..Default::default()
            });
        }
    }
    for (repo_index, name) in ["images", "labels", "models"].iter().enumerate() {
        meta.push(create_repo(name));
        let commits = 200;
        for index in 0..commits {
            let parent = if index == 0 {
                String::new()
            } else {
                format!("{repo_index:02x}{:030x}", index - 1)
            };
            let (tree, _) = &objects[(index + repo_index) % objects.len()];
            meta.push(admin::Op113 {
                commit: Some(pfs::BuildCommitRequest {
                    parent: commit(name, &parent),
                    id: format!("{repo_index:02x}{index:030x}"),
                    tree: Some(pfs::Object { hash: tree.clone() }),
                    size_bytes: BLOCK as u64,
                    finished: Some(prost_types::Timestamp {
                        seconds: 1_600_000_000 + index as i64,
                        nanos: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        meta.push(admin::Op113 {
            branch: Some(pfs::CreateBranchRequest {
                head: commit(name, &format!("{repo_index:02x}{:030x}", commits - 1)),
                branch: Some(pfs::Branch {
                    repo: repo(name),
                    name: "master".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for name in ["resize", "train", "evaluate"] {
        meta.push(pipeline(name, "images"));
        for _ in 0..100 {
            meta.push(admin::Op113 {
                job: Some(pps::CreateJobRequest {
                    pipeline: Some(pps::Pipeline { name: name.into() }),
                    state: pps::JobState::JobSuccess as i32,
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    for inner in meta {
        writer.write_op(&op(inner))?;
        ops += 1;
    }
    writer.finish()?.flush()?;
    Ok((ops, bytes))
}

/// Writes a dump of `count` pipelines reading one input repo.
fn gen_pipelines(path: &Path, count: usize) -> std::io::Result<u64> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut writer = DumpWriter::new(file);
    writer.write_op(&op(create_repo("input")))?;
    for index in 0..count {
        writer.write_op(&op(pipeline(&format!("p{index:04}"), "input")))?;
    }
    writer.finish()?.flush()?;
    Ok(count as u64 + 1)
}

/// Times framing and writing `records` to `out`; `hashed` uses ankus' own writer, which
/// also keeps the sha256 the manifest records.
fn frame_and_write(records: &[Vec<u8>], out: &Path, hashed: bool) -> std::io::Result<f64> {
    let started = Instant::now();
    let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let file = if hashed {
        let mut writer = RecordWriter::new(file);
        for record in records {
            writer.write_record(record)?;
        }
        writer.finish()?.2
    } else {
        let mut encoder = snap::write::FrameEncoder::new(file);
        for record in records {
            encoder.write_all(&(record.len() as i64).to_le_bytes())?;
            encoder.write_all(record)?;
        }
        encoder
            .into_inner()
            .map_err(|error| std::io::Error::other(error.to_string()))?
    };
    let file = file.into_inner().map_err(|error| error.into_error())?;
    file.sync_all()?;
    Ok(started.elapsed().as_secs_f64())
}

fn floor(dump: &Path, out: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let mut reader = RecordReader::new(std::fs::File::open(dump)?)?;
    let mut records = Vec::new();
    let mut bytes = 0u64;
    while let Some(record) = reader.next_record()? {
        bytes += 8 + record.bytes.len() as u64;
        records.push(record.bytes);
    }
    let bare = frame_and_write(&records, out, false)?;
    let hashed = frame_and_write(&records, out, true)?;
    std::fs::remove_file(out)?;
    Ok(serde_json::json!({
        "records": records.len(),
        "bytes": bytes,
        "bare_seconds": bare,
        "hashed_seconds": hashed,
    })
    .to_string())
}

fn main() {
    // `cargo bench` appends `--bench`; it is not ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| arg != "--bench")
        .collect();
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome: Result<String, Box<dyn std::error::Error>> = match words.as_slice() {
        ["gen-dump", path, mib] => mib
            .parse()
            .map_err(Into::into)
            .and_then(|mib| gen_dump(Path::new(path), mib).map_err(Into::into))
            .map(|(ops, bytes)| {
                serde_json::json!({ "ops": ops, "block_bytes": bytes }).to_string()
            }),
        ["gen-pipelines", path, count] => count
            .parse()
            .map_err(Into::into)
            .and_then(|count| gen_pipelines(Path::new(path), count).map_err(Into::into))
            .map(|ops| serde_json::json!({ "ops": ops }).to_string()),
        ["floor", dump, out] => floor(Path::new(dump), Path::new(out)),
        [] => Ok("peers: helpers for benches/run (run that instead)".to_owned()),
        _ => Err(format!("usage: peers gen-dump PATH MIB | gen-pipelines PATH COUNT | floor DUMP OUT (got {words:?})").into()),
    };
    match outcome {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("peers: {error}");
            std::process::exit(1);
        }
    }
}
