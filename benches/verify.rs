//! Benchmark (not a timed test): `backup verify` of a dump of 250,000 tiny metadata ops, which
//! must stay linear in the number of ops. Run with `cargo bench --bench verify`;
//! `ANKUS_BENCH_OPS` changes the count, `ANKUS_BENCH_LIMIT_S` the bound (default 60 s, generous
//! for any build: it only catches a return of the quadratic pass, which took 131 s for 240,000
//! ops in a 1.2 MB dump).
//!
//! The dump is what a cluster of many small repos extracts to: per repo a repo op, a commit,
//! a branch on it and an ACL (after one `activate_auth`). It prints one JSON line and exits 1
//! when verification fails or takes longer than the bound.

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::Instant;

use ankus::backup::verify::verify_bytes;
use ankus::backup::writer::RecordWriter;
use ankus::proto::{admin, auth, pfs};
use prost::Message;

fn record(writer: &mut RecordWriter<Vec<u8>>, inner: admin::Op113) {
    let op = admin::Op {
        op1_13: Some(inner),
        ..Default::default()
    };
    writer.write_record(&op.encode_to_vec()).expect("in memory");
}

fn dump(ops: usize) -> Vec<u8> {
    let mut writer = RecordWriter::new(Vec::new());
    record(
        &mut writer,
        admin::Op113 {
            activate_auth: Some(auth::ActivateRequest::default()),
            ..Default::default()
        },
    );
    for index in 0..ops.saturating_sub(1).div_ceil(4) {
        let repo = pfs::Repo {
            name: format!("r{index}"),
        };
        let commit = pfs::Commit {
            repo: Some(repo.clone()),
            id: format!("{index:032x}"),
        };
        record(
            &mut writer,
            admin::Op113 {
                repo: Some(pfs::CreateRepoRequest {
                    repo: Some(repo.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        record(
            &mut writer,
            admin::Op113 {
                commit: Some(pfs::BuildCommitRequest {
                    parent: Some(pfs::Commit {
                        repo: Some(repo.clone()),
                        id: String::new(),
                    }),
                    id: commit.id.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        record(
            &mut writer,
            admin::Op113 {
                branch: Some(pfs::CreateBranchRequest {
                    head: Some(commit),
                    branch: Some(pfs::Branch {
                        repo: Some(repo.clone()),
                        name: "master".into(),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        record(
            &mut writer,
            admin::Op113 {
                set_acl: Some(auth::SetAclRequest {
                    repo: repo.name,
                    entries: Vec::new(),
                }),
                ..Default::default()
            },
        );
    }
    writer.finish().expect("in memory").2
}

fn main() {
    let number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let ops = number("ANKUS_BENCH_OPS", 250_000);
    let limit = number("ANKUS_BENCH_LIMIT_S", 60) as f64;
    let bytes = dump(ops);
    let started = Instant::now();
    let report = verify_bytes(&bytes);
    let seconds = started.elapsed().as_secs_f64();
    let records = report.as_ref().map(|report| report.inventory.records);
    println!(
        "{}",
        serde_json::json!({
            "ops": records.as_ref().ok(),
            "stored_bytes": bytes.len(),
            "verify_s": seconds,
            "limit_s": limit,
        })
    );
    match report {
        Err(error) => {
            eprintln!("verify: {error}");
            std::process::exit(1);
        }
        Ok(_) if seconds > limit => {
            eprintln!("verify: {seconds:.1} s for {ops} ops, above the {limit} s bound");
            std::process::exit(1);
        }
        Ok(_) => {}
    }
}
