//! An external load generator: commits a small file to `repo@master` every interval over a real
//! gRPC connection (the generated client), recording each attempt with its time and outcome,
//! so tests can show writes racing a migration (and failing while ingress is blocked).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::proto::pfs;

/// One write attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// When it was made.
    pub at: jiff::Timestamp,
    /// The file written.
    pub path: String,
    /// `None` on success, the error text otherwise.
    pub error: Option<String>,
}

/// What a loader did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Every attempt in order.
    pub attempts: Vec<Attempt>,
}

impl LoadReport {
    /// Successful writes.
    pub fn successes(&self) -> usize {
        self.attempts.iter().filter(|a| a.error.is_none()).count()
    }

    /// Failed writes.
    pub fn failures(&self) -> usize {
        self.attempts.len() - self.successes()
    }
}

async fn write_once(
    address: &str,
    repo: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(), String> {
    let mut client = pfs::api_client::ApiClient::connect(address.to_owned())
        .await
        .map_err(|err| format!("connect {address}: {err}"))?;
    let request = pfs::PutFileRequest {
        file: Some(pfs::File {
            commit: Some(pfs::Commit {
                repo: Some(pfs::Repo {
                    name: repo.to_owned(),
                }),
                id: "master".to_owned(),
            }),
            path: path.to_owned(),
        }),
        value: format!("{}\n", jiff::Timestamp::now()).into_bytes(),
        ..Default::default()
    };
    let mut call = tonic::Request::new(tokio_stream::iter(vec![request]));
    if let Some(token) = token
        && let Ok(value) = token.parse()
    {
        call.metadata_mut().insert("authn-token", value);
    }
    client
        .put_file(call)
        .await
        .map(|_| ())
        .map_err(|status| status.message().to_owned())
}

/// Writes `/load-NNNNNNNN` to `repo@master` at `address` (`http://127.0.0.1:PORT`) every
/// `interval` until `stop` is cancelled; every attempt is recorded. A fresh connection per
/// write, so a blocked or moved endpoint shows up as failures rather than a stuck channel.
pub async fn run(
    address: &str,
    repo: &str,
    interval: Duration,
    stop: CancellationToken,
    token: Option<&str>,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut ticker = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {
                let path = format!("/load-{:08}", report.attempts.len());
                let at = jiff::Timestamp::now();
                let error = tokio::select! {
                    _ = stop.cancelled() => break,
                    result = write_once(address, repo, &path, token) => result.err(),
                };
                report.attempts.push(Attempt { at, path, error });
            }
        }
    }
    report
}
