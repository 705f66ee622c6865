//! Dumps that pachd would half-apply: `ankus backup verify` refuses them naming the record,
//! the sandbox's strict restore refuses what verify refuses (one rule set), and extract never
//! writes an op that no restore could read.

use ankus::proto::{admin, pfs, pps};
use prost::Message;

use crate::faults::serve;
use crate::support::{ankus_async, ankus_in, pach_config, temp_dir, write};

fn op(inner: admin::Op113) -> admin::Op {
    admin::Op {
        op1_13: Some(inner),
        ..Default::default()
    }
}

fn repo_op(name: &str) -> admin::Op {
    op(admin::Op113 {
        repo: Some(pfs::CreateRepoRequest {
            repo: Some(pfs::Repo { name: name.into() }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn pipeline_op(name: &str, input: &str) -> admin::Op {
    op(admin::Op113 {
        pipeline: Some(pps::CreatePipelineRequest {
            pipeline: Some(pps::Pipeline { name: name.into() }),
            transform: Some(pps::Transform {
                image: "ubuntu".into(),
                ..Default::default()
            }),
            input: Some(pps::Input {
                pfs: Some(pps::PfsInput {
                    repo: input.into(),
                    branch: "master".into(),
                    glob: "/*".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn dump(ops: &[admin::Op]) -> Vec<u8> {
    let mut writer = ankus::backup::writer::RecordWriter::new(Vec::new());
    for op in ops {
        writer.write_record(&op.encode_to_vec()).expect("write");
    }
    writer.finish().expect("finish").2
}

async fn restore(
    address: std::net::SocketAddr,
    mode: &str,
    ops: &[admin::Op],
) -> Result<(), tonic::Status> {
    let mut client = admin::api_client::ApiClient::connect(format!("http://{address}"))
        .await
        .expect("connects");
    let requests: Vec<admin::RestoreRequest> = (ops.iter())
        .map(|op| admin::RestoreRequest {
            op: Some(op.clone()),
            url: String::new(),
        })
        .collect();
    let mut request = tonic::Request::new(tokio_stream::iter(requests));
    request
        .metadata_mut()
        .insert("ankus-restore-mode", mode.parse().expect("ascii"));
    client.restore(request).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_verify_refuses_a_pipeline_on_a_missing_repo_that_pachd_half_applies() {
    let ops = [repo_op("a"), pipeline_op("p", "gone")];
    let dir = temp_dir();
    std::fs::write(dir.path().join("half.dump"), dump(&ops)).expect("write dump");
    let out = ankus_in(dir.path(), &["backup", "verify", "half.dump"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("record 1 at byte offset ")
            && out
                .stderr
                .contains("pipeline 'p' reads repo gone, which no earlier op creates"),
        "{}",
        out.stderr
    );

    // What verify spares the user: pachd (lenient) keeps repo a and fails at the pipeline.
    let served = serve("1.13").await;
    let error = restore(served.address, "lenient", &ops)
        .await
        .expect_err("pachd fails at the pipeline");
    assert!(error.message().contains("gone"), "{}", error.message());
    assert!(served.cluster.lock().repos.contains_key("a"));
}

/// pachd ignores "already exists", so a duplicate passed the strict restore while verify
/// refused it: both now check the same rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_restore_refuses_a_duplicate_that_backup_verify_refuses() {
    let ops = [repo_op("a"), repo_op("a")];
    let served = serve("1.13").await;
    let error = restore(served.address, "strict", &ops)
        .await
        .expect_err("refused");
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        error.message(),
        "restore would fail: 1 problem found, nothing was applied\n\
         op 1 (repo): duplicate repo 'a' (already defined earlier in the dump)"
    );
    assert!(served.cluster.lock().repos.is_empty());

    let dir = temp_dir();
    std::fs::write(dir.path().join("dup.dump"), dump(&ops)).expect("write dump");
    let out = ankus_in(dir.path(), &["backup", "verify", "dup.dump"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("duplicate repo 'a' (already defined earlier in the dump)"),
        "{}",
        out.stderr
    );
}

/// pachd sends ops up to the client's 64 MiB message limit; a dump reader takes records up to
/// 20 MiB, so a 30 MiB op made a backup that every restore refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extract_refuses_an_op_no_restore_could_read_and_writes_no_backup() {
    let served = serve("1.13").await;
    served
        .cluster
        .lock()
        .create_repo("big", &"x".repeat(30 << 20), false)
        .expect("repo");
    let dir = temp_dir();
    let config = pach_config(
        dir.path(),
        &[("t", &format!("grpc://{}", served.address), None)],
    );
    write(
        dir.path(),
        "extract.rhai",
        r#"pachd::connect("t").extract(#{ to: "big.dump" });"#,
    );
    let out = ankus_async(dir.path(), &config, &["run", "./extract.rhai"], &[]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("no backup was written")
            && out.stderr.contains(
                "op 0 (repo) is 31457302 bytes, above the 20971520-byte record limit of a dump"
            ),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("big.dump").exists());
}
