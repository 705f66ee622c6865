//! Generated sample data for a sandbox cluster: the DAG of Pachyderm's own migration test
//! (`left`, `right` → `copy` → `sort`), created over gRPC like a user would.

use crate::proto::{pfs, pps};

use super::pachd::error::SandboxError;

fn wire(what: &str, status: tonic::Status) -> SandboxError {
    SandboxError::Wire(format!("{what}: {}", status.message()))
}

/// Creates repos `left` and `right` with ten small files in a few commits, and pipelines
/// `copy` (union of both) and `sort` (over `copy`), in the pachd at `endpoint`.
pub async fn fill(endpoint: &str) -> Result<(), SandboxError> {
    let connect = |error: tonic::transport::Error| {
        SandboxError::Wire(format!("connect to {endpoint}: {error}"))
    };
    let mut files = pfs::api_client::ApiClient::connect(endpoint.to_owned())
        .await
        .map_err(connect)?;
    let mut pipelines = pps::api_client::ApiClient::connect(endpoint.to_owned())
        .await
        .map_err(connect)?;
    for repo in ["left", "right"] {
        files
            .create_repo(pfs::CreateRepoRequest {
                repo: Some(pfs::Repo { name: repo.into() }),
                description: format!("sample input repo {repo}"),
                ..Default::default()
            })
            .await
            .map_err(|status| wire("create repo", status))?;
    }
    for digit in 0..10u32 {
        let repo = if digit < 5 { "left" } else { "right" };
        let content: String = (0..10).map(|tens| format!("{tens}{digit}\n")).collect();
        let request = pfs::PutFileRequest {
            file: Some(pfs::File {
                commit: Some(pfs::Commit {
                    repo: Some(pfs::Repo { name: repo.into() }),
                    id: "master".into(),
                }),
                path: format!("/{digit}"),
            }),
            value: content.into_bytes(),
            ..Default::default()
        };
        files
            .put_file(tokio_stream::iter(vec![request]))
            .await
            .map_err(|status| wire("put file", status))?;
    }
    let pfs_input = |repo: &str, glob: &str| pps::Input {
        pfs: Some(pps::PfsInput {
            name: repo.into(),
            repo: repo.into(),
            branch: "master".into(),
            glob: glob.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pipeline = |name: &str, stdin: &str, input: pps::Input| pps::CreatePipelineRequest {
        pipeline: Some(pps::Pipeline { name: name.into() }),
        transform: Some(pps::Transform {
            image: "ubuntu:16.04".into(),
            cmd: vec!["/bin/bash".into()],
            stdin: vec![stdin.into()],
            ..Default::default()
        }),
        parallelism_spec: Some(pps::ParallelismSpec {
            constant: 1,
            ..Default::default()
        }),
        input: Some(input),
        enable_stats: true,
        datum_tries: 3,
        ..Default::default()
    };
    pipelines
        .create_pipeline(pipeline(
            "copy",
            "cp /pfs/*/* /pfs/out",
            pps::Input {
                union: vec![pfs_input("left", "/*"), pfs_input("right", "/*")],
                ..Default::default()
            },
        ))
        .await
        .map_err(|status| wire("create pipeline copy", status))?;
    pipelines
        .create_pipeline(pipeline(
            "sort",
            "sort -n /pfs/copy/* >/pfs/out/nums",
            pfs_input("copy", "/"),
        ))
        .await
        .map_err(|status| wire("create pipeline sort", status))?;
    Ok(())
}
