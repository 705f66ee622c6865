//! Benchmark (not a timed test): extract and restore throughput through a sandbox cluster for
//! a dump of ≥ 1 GiB. Run with `cargo bench --bench sandbox`; `ANKUS_BENCH_MIB` changes the size.
//!
//! The dump holds incompressible block data in 10 MiB ops (pachd's chunk size), one
//! `create_object` per block, and metadata ops (a repo, a chain of commits, a branch, a
//! pipeline, jobs). It is written with pachctl's framing, restored over gRPC by the sandbox's
//! seeding path (read file → stream `RestoreRequest`s), then extracted back over gRPC.
//!
//! Measured once (2-core VM, release, client and server in one process, 1030 MiB of blocks,
//! 1312 ops): restore 7.27 s = 180 ops/s, 148.5 MB/s; extract 1.87 s = 706 ops/s, 576.3 MB/s.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use ankus::proto::{admin, pfs, pps};
use ankus::sandbox::cluster::{restore_dump, spawn_cluster};
use ankus::sandbox::pachd::ClusterConfig;
use ankus::sandbox::pachd::dumpfile::DumpWriter;
use rand::RngCore;
use sha2::{Digest, Sha512};

const CHUNK: usize = 10 << 20;

fn op(inner: admin::Op113) -> admin::Op {
    admin::Op {
        op1_13: Some(inner),
        ..Default::default()
    }
}

fn commit(repo: &str, id: &str) -> pfs::Commit {
    pfs::Commit {
        repo: Some(pfs::Repo { name: repo.into() }),
        id: id.into(),
    }
}

/// Writes the dump; returns (ops, payload bytes).
fn write_dump(path: &std::path::Path, mib: usize) -> (u64, u64) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).expect("create dump"));
    let mut writer = DumpWriter::new(file);
    let mut rng = rand::rng();
    let blocks = mib.div_ceil(10);
    let mut ops = 0u64;
    let mut bytes = 0u64;
    let mut objects = Vec::new();
    for index in 0..blocks {
        let id = format!("{index:032x}");
        let mut value = vec![0u8; CHUNK];
        rng.fill_bytes(&mut value);
        let hash = hex::encode(Sha512::digest(&value));
        objects.push((hash, id.clone()));
        bytes += value.len() as u64;
        for value in [value, Vec::new()] {
            writer
                .write_op(&op(admin::Op113 {
                    block: Some(pfs::PutBlockRequest {
                        block: Some(pfs::Block { hash: id.clone() }),
                        value,
                    }),
                    ..Default::default()
                }))
                .expect("write op");
            ops += 1;
        }
    }
    let mut meta = Vec::new();
    for (hash, id) in &objects {
        meta.push(admin::Op113 {
            create_object: Some(pfs::CreateObjectRequest {
                object: Some(pfs::Object { hash: hash.clone() }),
                block_ref: Some(pfs::BlockRef {
                    block: Some(pfs::Block { hash: id.clone() }),
                    range: Some(pfs::ByteRange {
                        lower: 0,
                        upper: CHUNK as u64,
                    }),
                }),
            }),
            ..Default::default()
        });
    }
    meta.push(admin::Op113 {
        repo: Some(pfs::CreateRepoRequest {
            repo: Some(pfs::Repo {
                name: "data".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let commits = 500;
    for index in 0..commits {
        let parent = if index == 0 {
            String::new()
        } else {
            format!("{:032x}", index - 1)
        };
        let (tree, _) = &objects[index % objects.len()];
        meta.push(admin::Op113 {
            commit: Some(pfs::BuildCommitRequest {
                parent: Some(commit("data", &parent)),
                id: format!("{index:032x}"),
                tree: Some(pfs::Object { hash: tree.clone() }),
                size_bytes: CHUNK as u64,
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
            head: Some(commit("data", &format!("{:032x}", commits - 1))),
            branch: Some(pfs::Branch {
                repo: Some(pfs::Repo {
                    name: "data".into(),
                }),
                name: "master".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    meta.push(admin::Op113 {
        pipeline: Some(pps::CreatePipelineRequest {
            pipeline: Some(pps::Pipeline {
                name: "work".into(),
            }),
            transform: Some(pps::Transform {
                image: "alpine".into(),
                ..Default::default()
            }),
            input: Some(pps::Input {
                pfs: Some(pps::PfsInput {
                    repo: "data".into(),
                    glob: "/*".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    for _ in 0..500 {
        meta.push(admin::Op113 {
            job: Some(pps::CreateJobRequest {
                pipeline: Some(pps::Pipeline {
                    name: "work".into(),
                }),
                state: pps::JobState::JobSuccess as i32,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for inner in meta {
        writer.write_op(&op(inner)).expect("write op");
        ops += 1;
    }
    writer.finish().expect("finish dump");
    (ops, bytes)
}

fn rate(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count / seconds
    } else {
        f64::INFINITY
    }
}

fn main() {
    let mib: usize = std::env::var("ANKUS_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1030);
    let dir = tempfile::tempdir().expect("temp dir");
    let dump = dir.path().join("bench.dump");
    let started = Instant::now();
    let (ops, bytes) = write_dump(&dump, mib);
    let file_size = std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0);
    println!(
        "dump: {ops} ops, {:.1} MiB of block data, {:.1} MiB on disk (generated in {:.1}s)",
        bytes as f64 / 1048576.0,
        file_size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = ClusterConfig::new("bench", "1.13".parse().expect("version"), &dir.path().join("bucket"));
        let (_cluster, address, shutdown, _task) = spawn_cluster(config).await.expect("cluster starts");
        let endpoint = format!("http://{address}");

        let started = Instant::now();
        let sent = restore_dump(&endpoint, &dump, "benchtoken").await.expect("restore");
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "restore: {sent} ops in {seconds:.2}s = {:.0} ops/s, {:.1} MB/s (block data)",
            rate(sent as f64, seconds),
            rate(bytes as f64 / 1e6, seconds)
        );

        let started = Instant::now();
        let channel = tonic::transport::Channel::from_shared(endpoint.clone()).expect("endpoint").connect().await.expect("connect");
        let mut client = admin::api_client::ApiClient::new(channel)
            .max_decoding_message_size(64 << 20);
        let mut stream = client.extract(admin::ExtractRequest::default()).await.expect("extract").into_inner();
        let (mut count, mut data) = (0u64, 0u64);
        while let Some(op) = stream.message().await.expect("extract streams") {
            count += 1;
            if let Some(block) = op.op1_13.as_ref().and_then(|o| o.block.as_ref()) {
                data += block.value.len() as u64;
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "extract: {count} ops in {seconds:.2}s = {:.0} ops/s, {:.1} MB/s (block data, {:.1} MiB)",
            rate(count as f64, seconds),
            rate(data as f64 / 1e6, seconds),
            data as f64 / 1048576.0
        );
        shutdown.cancel();
    });
}
