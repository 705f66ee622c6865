//! Moving dumps between pachd and storage: extract a cluster into a dump (with its manifest),
//! and restore a dump into a cluster only after the whole source has been verified.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use super::error::BackupError;
use super::location::Location;
use super::manifest::SourceInfo;
use super::reader::RecordReader;
use super::sink::{DumpSink, DumpUpload, SinkSummary};
use super::verify::{VerifyReport, verify};
use super::wire::OpKind;
use crate::kind::{Kind, Kinded};
use crate::pachd::{ExtractFlags, PachdClient, PachdError};

/// What can go wrong moving a dump.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// pachd failed part-way through an extract; nothing was written under the dump's name.
    #[error("extract failed after {ops} op(s) ({bytes} bytes); no backup was written")]
    Extract {
        /// Ops received before the failure.
        ops: u64,
        /// Bytes received.
        bytes: u64,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The source failed verification; nothing was sent to pachd.
    #[error("{location} failed verification; no op was sent to pachd")]
    Unverified {
        /// The source.
        location: String,
        /// Why.
        #[source]
        source: BackupError,
    },
    /// pachd failed part-way through a restore.
    #[error(
        "restore failed after sending {sent} of {total} op(s) (the last sent: {last}); {}",
        after.describe()
    )]
    Restore {
        /// Ops sent before the failure.
        sent: u64,
        /// Ops in the dump.
        total: u64,
        /// The last op sent, `record N kind name`.
        last: String,
        /// What the target holds now, and what this restore created.
        after: Box<Aftermath>,
        /// The cause.
        #[source]
        source: PachdError,
    },
    /// The target has auth active and the caller is not a cluster admin; nothing was sent.
    #[error("restore into {address} needs a cluster admin token; no op was sent: {reason}")]
    NotAdmin {
        /// The target.
        address: String,
        /// pachd's answer (or who the token belongs to).
        reason: String,
    },
    /// The dump holds ops of a pachd newer than the target, which the target cannot read;
    /// nothing was sent (pachd 1.x would accept such ops and apply none of them).
    #[error(
        "{location} holds op{dump} records (pachd {dump}) but {address} runs pachd {target}, which \
         cannot read them (it would accept every op and apply none); no op was sent: restore \
         into pachd {dump} or newer"
    )]
    NewerDump {
        /// The source.
        location: String,
        /// The newest op version in the dump, `1.11`.
        dump: String,
        /// The target's version, `1.9.0`.
        target: String,
        /// The target.
        address: String,
    },
    /// pachd took the whole stream, but the target does not hold what the dump creates.
    #[error(
        "pachd at {address} accepted all {sent} op(s) but the restore did not take effect: {missing}"
    )]
    NotApplied {
        /// The target.
        address: String,
        /// Ops sent.
        sent: u64,
        /// What the dump creates that the target lacks.
        missing: String,
    },
    /// A local problem (spooling stdin, opening the dump).
    #[error(transparent)]
    Backup(#[from] BackupError),
}

impl Kinded for TransferError {
    fn kind(&self) -> Kind {
        match self {
            TransferError::Extract { .. } => Kind::Failed,
            TransferError::Unverified { .. } => Kind::Invalid,
            TransferError::Restore { source, .. } => source.kind(),
            TransferError::NotAdmin { .. } => Kind::PermissionDenied,
            TransferError::NewerDump { .. } => Kind::Invalid,
            TransferError::NotApplied { .. } => Kind::Failed,
            TransferError::Backup(error) => error.kind(),
        }
    }

    fn details(&self) -> Option<serde_json::Value> {
        match self {
            TransferError::Restore {
                sent,
                total,
                last,
                after,
                ..
            } => Some(serde_json::json!({
                "target": after.target,
                "sent": sent,
                "total": total,
                "last": last,
                "repos": after.repos,
                "pipelines": after.pipelines,
                "created": after.created,
                "root_token": after.root_token,
                "unknown": after.unknown,
            })),
            _ => None,
        }
    }
}

impl TransferError {
    /// The root token a restore generated, when the target's auth is now active with it
    /// (the user needs it to get back in, whether the restore finished or not).
    pub fn root_token(&self) -> Option<&str> {
        match self {
            TransferError::Restore { after, .. } => after.root_token.as_deref(),
            _ => None,
        }
    }
}

/// Repos and pipelines by name.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Objects {
    /// Repo names.
    pub repos: Vec<String>,
    /// Pipeline names.
    pub pipelines: Vec<String>,
}

impl Objects {
    async fn of(client: &PachdClient) -> Result<Objects, PachdError> {
        let repos = client.list_repos().await?;
        let pipelines = client.list_pipelines().await?;
        Ok(Objects {
            repos: repos.into_iter().map(|repo| repo.name).collect(),
            pipelines: pipelines
                .into_iter()
                .map(|pipeline| pipeline.name)
                .collect(),
        })
    }

    /// [`Objects::of`] just after a stream broke: the connection may be the broken one, or
    /// pachd may be restarting, so a failed listing is asked again a few times (reads are
    /// already retried on UNAVAILABLE; a reset stream can surface as other codes).
    async fn after_failure(client: &PachdClient) -> Result<Objects, PachdError> {
        let mut attempt = 0;
        loop {
            match Objects::of(client).await {
                Ok(objects) => return Ok(objects),
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn minus(&self, earlier: &Objects) -> Objects {
        let repos: HashSet<&String> = earlier.repos.iter().collect();
        let pipelines: HashSet<&String> = earlier.pipelines.iter().collect();
        Objects {
            repos: (self.repos.iter())
                .filter(|name| !repos.contains(name))
                .cloned()
                .collect(),
            pipelines: (self.pipelines.iter())
                .filter(|name| !pipelines.contains(name))
                .cloned()
                .collect(),
        }
    }
}

/// What a failed restore left on the target, asked of the target after the failure.
#[derive(Clone, Debug, Default)]
pub struct Aftermath {
    /// The target's address.
    pub target: String,
    /// Repos on the target now (`None` when the target could not be asked).
    pub repos: Option<Vec<String>>,
    /// Pipelines on the target now.
    pub pipelines: Option<Vec<String>>,
    /// What this restore created (now minus before), when both listings worked.
    pub created: Option<Objects>,
    /// The root token sent, when auth is now active with it.
    pub root_token: Option<String>,
    /// Why the target could not be asked.
    pub unknown: Option<String>,
}

impl Aftermath {
    fn describe(&self) -> String {
        if let Some(reason) = &self.unknown {
            return format!("the target could not be asked what it holds ({reason})");
        }
        let list = |names: &Option<Vec<String>>| match names {
            Some(names) if !names.is_empty() => names.join(", "),
            _ => "none".to_owned(),
        };
        let mut text = format!(
            "the target now has repos [{}] and pipelines [{}]",
            list(&self.repos),
            list(&self.pipelines)
        );
        if let Some(created) = &self.created
            && !(created.repos.is_empty() && created.pipelines.is_empty())
        {
            text.push_str("; `c.cleanup_restore(e.details)` deletes what this restore created");
        }
        text
    }
}

/// Whose token a restore sends (pachctl restore's `--no-token`, §5.7).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RootToken {
    /// When the dump activates auth, a fresh random token is sent as `authn-token`, so it
    /// becomes `pach:root`'s token (pachctl's default since 1.11.9).
    #[default]
    Generate,
    /// The connection's own token (`--no-token`).
    Keep,
}

/// How to restore.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Whose token is sent.
    pub root_token: RootToken,
}

/// Counters a caller can watch while a transfer runs (for progress display).
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Ops moved so far.
    pub ops: Arc<AtomicU64>,
    /// Op bytes moved so far.
    pub bytes: Arc<AtomicU64>,
}

/// Extracts `client` into a dump at `target`. The dump appears under its name, with its
/// manifest, only when the whole stream has arrived.
pub async fn extract_to(
    client: &PachdClient,
    flags: &ExtractFlags,
    target: &Location,
    source: SourceInfo,
    progress: &Progress,
) -> Result<SinkSummary, TransferError> {
    let failed = |error: Box<dyn std::error::Error + Send + Sync>| TransferError::Extract {
        ops: progress.ops.load(Ordering::Relaxed),
        bytes: progress.bytes.load(Ordering::Relaxed),
        source: error,
    };
    let mut sink = DumpSink::create(target, source)?;
    let mut upload = DumpUpload::open(target).map_err(|error| failed(Box::new(error)))?;
    let mut stream = client
        .extract(flags)
        .await
        .map_err(|error| failed(Box::new(error)))?;
    while let Some(item) = stream.next().await {
        let op = item.map_err(|error| failed(Box::new(error)))?;
        sink.write_op(&op)
            .map_err(|error| failed(Box::new(error)))?;
        if let Some(upload) = upload.as_mut() {
            upload
                .send(&mut sink)
                .await
                .map_err(|error| failed(Box::new(error)))?;
        }
        progress.ops.fetch_add(1, Ordering::Relaxed);
        progress.bytes.fetch_add(op.len() as u64, Ordering::Relaxed);
    }
    let (summary, remainder) = sink
        .finish_with_remainder()
        .map_err(|error| failed(Box::new(error)))?;
    if let (Some(upload), Some(remainder)) = (upload, remainder) {
        upload
            .complete(&summary, remainder)
            .await
            .map_err(|error| failed(Box::new(error)))?;
    }
    Ok(summary)
}

/// What a restore did.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreSummary {
    /// The verification that ran before anything was sent.
    pub verified: VerifyReport,
    /// Ops sent.
    pub ops: u64,
    /// The generated root token, when the restore activated auth with it; registered as a
    /// secret, so it shows as `***` everywhere but the one line meant for the user.
    pub root_token: Option<String>,
}

/// A dump made readable twice: stdin is spooled to a temporary file first, so it can be
/// verified completely before it is sent.
pub struct Replayable {
    location: Location,
    _spool: Option<tempfile::TempPath>,
}

impl Replayable {
    /// Prepares `location` for a verify pass and a send pass.
    pub fn new(location: &Location) -> Result<Replayable, BackupError> {
        if *location != Location::Std {
            return Ok(Replayable {
                location: location.clone(),
                _spool: None,
            });
        }
        let io_error = |source| BackupError::Io {
            action: "spool",
            target: "stdin".into(),
            source,
        };
        let mut spool = tempfile::NamedTempFile::new().map_err(io_error)?;
        std::io::copy(&mut std::io::stdin().lock(), &mut spool).map_err(io_error)?;
        let path = spool.into_temp_path();
        Ok(Replayable {
            location: Location::File(path.to_path_buf()),
            _spool: Some(path),
        })
    }

    /// The location to read.
    pub fn location(&self) -> &Location {
        &self.location
    }
}

/// Verifies the dump at `location` completely (framing, checksums, relations, manifest), then
/// streams it into `client`. No op is sent when verification fails.
pub async fn restore_from(
    client: &PachdClient,
    location: &Location,
    mode: Option<&str>,
    progress: &Progress,
    options: &RestoreOptions,
) -> Result<RestoreSummary, TransferError> {
    let source = Replayable::new(location)?;
    let readable = source.location().clone();
    let checked = on_plain_thread("ankus-restore-verify", location, move || verify(&readable))
        .await?
        .map_err(|error| TransferError::Unverified {
            location: location.display(),
            source: error,
        })?;
    let total = checked.inventory.records;
    if let Some(refusal) = newer_dump(client, location, &checked) {
        return Err(refusal);
    }
    admin_check(client).await?;
    let before = Objects::of(client).await.ok();
    let activates_auth = checked.inventory.kinds.contains_key("activate_auth");
    let generated = (activates_auth && options.root_token == RootToken::Generate)
        .then(|| uuid::Uuid::new_v4().simple().to_string());
    let restorer = match &generated {
        Some(token) => client
            .with_token(token)
            .map_err(|error| TransferError::Restore {
                sent: 0,
                total,
                last: "none".into(),
                after: Box::default(),
                source: error,
            })?,
        None => client.clone(),
    };
    let last = Arc::new(std::sync::Mutex::new(String::from("none")));
    let send_last = {
        let readable = source.location().clone();
        let inventory = checked.inventory.clone();
        on_plain_thread("ankus-restore-order", location, move || {
            pipelines_to_send_last(&readable, &inventory)
        })
        .await??
    };

    // Records are read on a plain thread and handed over through a small channel, so memory
    // stays bounded by the channel, whatever the dump's size. Block records are up to 10 MiB
    // and each is also copied once into the gRPC encoder: reading runs far faster than
    // sending, so one record waiting is enough to keep the sender busy, and the restore stays
    // within the 64 MiB it may use.
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<(Bytes, String), BackupError>>(1);
    let reader_location = source.location().clone();
    let reader = std::thread::Builder::new()
        .name("ankus-restore-reader".into())
        .spawn(move || {
            let records = reader_location.open().and_then(RecordReader::new);
            let mut records = match records {
                Ok(records) => records,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            let mut held: Vec<(Bytes, String)> = Vec::new();
            loop {
                // Wait for room before reading, so no record sits read but unsendable.
                let Ok(slot) = futures::executor::block_on(sender.reserve()) else {
                    return;
                };
                match records.next_record() {
                    Ok(Some(record)) => {
                        // The op keeps the record's bytes, so they are not copied again.
                        let op = match super::op::Op::from_record(record) {
                            Ok(op) => op,
                            Err(error) => {
                                slot.send(Err(error));
                                return;
                            }
                        };
                        let name = op.name();
                        let label = format!("record {} {} {name}", op.index, op.kind.as_str());
                        if op.kind == OpKind::Pipeline && send_last.contains(&name) {
                            drop(slot);
                            held.push((op.bytes, label));
                            continue;
                        }
                        slot.send(Ok((op.bytes, label)));
                    }
                    Ok(None) => {
                        drop(slot);
                        for op in held {
                            if futures::executor::block_on(sender.send(Ok(op))).is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    Err(error) => {
                        slot.send(Err(error));
                        return;
                    }
                }
            }
        })
        .map_err(|error| BackupError::Io {
            action: "read",
            target: location.display(),
            source: error,
        })?;
    let counter = progress.clone();
    let sent_last = last.clone();
    // The reader runs ahead; an op counts as sent when the gRPC stream takes it.
    let ops = tokio_stream::wrappers::ReceiverStream::new(receiver).map(move |item| {
        item.map(|(op, label)| {
            counter.ops.fetch_add(1, Ordering::Relaxed);
            counter.bytes.fetch_add(op.len() as u64, Ordering::Relaxed);
            if let Ok(mut slot) = sent_last.lock() {
                *slot = label;
            }
            op
        })
    });
    let outcome = restorer.restore_in_mode(ops, mode).await;
    // The reader stops by itself once the channel is closed.
    let _ = reader.join();
    let sent = progress.ops.load(Ordering::Relaxed);
    // The generated token matters only if auth is now on with it (pachctl asks GetAdmins
    // without a token, as here).
    let root_token = match &generated {
        Some(token) if restorer.is_auth_active().await.unwrap_or(true) => Some(token.clone()),
        _ => None,
    };
    match outcome {
        Ok(()) => {
            applied_check(&restorer, &checked, sent).await?;
            Ok(RestoreSummary {
                verified: checked,
                ops: sent,
                root_token,
            })
        }
        Err(error) => {
            let mut after = Aftermath {
                target: client.address(),
                root_token,
                ..Aftermath::default()
            };
            match Objects::after_failure(&restorer).await {
                Ok(now) => {
                    after.created = before.map(|before| now.minus(&before));
                    after.repos = Some(now.repos);
                    after.pipelines = Some(now.pipelines);
                }
                Err(probe) => after.unknown = Some(crate::kind::chain_text(&probe)),
            }
            Err(TransferError::Restore {
                sent,
                total,
                last: last.lock().map(|slot| slot.clone()).unwrap_or_default(),
                after: Box::new(after),
                source: error,
            })
        }
    }
}

/// Runs `work` (which reads the dump) on a thread of its own and waits for it without
/// blocking the runtime. Not `spawn_blocking`: an object-store dump is read through a bridge
/// that blocks on the runtime, which tokio refuses on any thread it runs.
async fn on_plain_thread<T: Send + 'static>(
    name: &str,
    location: &Location,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackupError> {
    let failed = |reason: &str| BackupError::Io {
        action: "read",
        target: location.display(),
        source: std::io::Error::other(reason.to_owned()),
    };
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = sender.send(work());
        })
        .map_err(|error| BackupError::Io {
            action: "read",
            target: location.display(),
            source: error,
        })?;
    receiver
        .await
        .map_err(|_| failed("the reading thread stopped before it finished"))
}

/// Pipelines whose op a restore sends after every other op. pachd 1.9.0–1.9.5 extract a
/// stopped pipeline's output repo (stopping drops its branch's provenance) with the repo's
/// commits and branches *after* the pipeline op. Sent in that order, pachd 1.9 refuses those
/// commits once the pipeline has made the branch an output branch ("cannot start a commit on
/// an output branch"), and a more lenient target keeps the branch without provenance, so the
/// pipeline never runs again. Sent last, the pipeline finds its output repo, commits and
/// branch in place and links them to its inputs, as on the source. Later versions extract
/// pipelines after every commit, and dumps with jobs (which name their pipeline) are left
/// as they are.
fn pipelines_to_send_last(
    location: &Location,
    inventory: &super::inventory::Inventory,
) -> Result<std::collections::BTreeSet<String>, BackupError> {
    let mut send_last = std::collections::BTreeSet::new();
    let repos: HashSet<&str> = (inventory.repos.iter())
        .map(|repo| repo.name.as_str())
        .collect();
    let carries_an_output_repo =
        (inventory.pipelines.iter()).any(|pipeline| repos.contains(pipeline.name.as_str()));
    if !carries_an_output_repo || inventory.jobs > 0 {
        return Ok(send_last);
    }
    let mut records = RecordReader::new(location.open()?)?;
    let mut pipelines_seen = std::collections::BTreeSet::new();
    while let Some(record) = records.next_record()? {
        // Object and block records are most of a dump: classify them without decoding.
        let Ok((_, kind)) = super::wire::classify(&record.bytes) else {
            continue;
        };
        if !matches!(kind, OpKind::Pipeline | OpKind::Commit | OpKind::Branch) {
            continue;
        }
        let op = super::op::Op::from_record(record)?;
        match kind {
            OpKind::Pipeline => {
                pipelines_seen.insert(op.name());
            }
            _ => {
                let repo = op.repo();
                if pipelines_seen.contains(&repo) {
                    send_last.insert(repo);
                }
            }
        }
    }
    Ok(send_last)
}

/// The refusal of a dump whose ops are newer than the target's pachd, if it is one: pachd 1.x decodes a Restore
/// request of a version it does not know as an empty op and applies nothing, then reports
/// success, so the cluster would stay empty behind a finished restore.
fn newer_dump(
    client: &PachdClient,
    location: &Location,
    checked: &VerifyReport,
) -> Option<TransferError> {
    let target = client.version();
    let newest = (checked.inventory.versions.keys())
        .filter_map(|version| version.strip_prefix("1.")?.parse::<u32>().ok())
        .max();
    match newest {
        Some(minor) if target.major == 1 && minor > target.minor => {
            Some(TransferError::NewerDump {
                location: location.display(),
                dump: format!("1.{minor}"),
                target: target.to_string(),
                address: client.address(),
            })
        }
        _ => None,
    }
}

/// Confirms, after pachd closed the stream with success, that the target holds every repo
/// and pipeline the dump creates and at least the dump's commits per repo: a cheap count
/// check instead of trusting the stream's end.
async fn applied_check(
    client: &PachdClient,
    checked: &VerifyReport,
    sent: u64,
) -> Result<(), TransferError> {
    let inventory = &checked.inventory;
    let not_applied = |missing: String| TransferError::NotApplied {
        address: client.address(),
        sent,
        missing,
    };
    let ask = |error: PachdError| {
        not_applied(format!(
            "the target could not be asked what it holds ({})",
            crate::kind::chain_text(&error)
        ))
    };
    let now = Objects::of(client).await.map_err(ask)?;
    let mut missing = Vec::new();
    // ListRepo never shows the spec repo, which some versions' dumps carry as a repo op.
    let held_repos: HashSet<&str> = now.repos.iter().map(String::as_str).collect();
    let held_pipelines: HashSet<&str> = now.pipelines.iter().map(String::as_str).collect();
    let absent_repos: Vec<&str> = (inventory.repos.iter())
        .map(|repo| repo.name.as_str())
        .filter(|name| *name != SPEC_REPO && !held_repos.contains(name))
        .collect();
    if !absent_repos.is_empty() {
        let listed = (inventory.repos.iter())
            .filter(|repo| repo.name != SPEC_REPO)
            .count();
        missing.push(format!(
            "{} of the dump's {listed} repo(s) are missing ({})",
            absent_repos.len(),
            first_names(&absent_repos)
        ));
    }
    let absent_pipelines: Vec<&str> = (inventory.pipelines.iter())
        .map(|pipeline| pipeline.name.as_str())
        .filter(|name| !held_pipelines.contains(name))
        .collect();
    if !absent_pipelines.is_empty() {
        missing.push(format!(
            "{} of the dump's {} pipeline(s) are missing ({})",
            absent_pipelines.len(),
            inventory.pipelines.len(),
            first_names(&absent_pipelines)
        ));
    }
    let absent: HashSet<&str> = absent_repos.iter().copied().collect();
    for repo in &inventory.repos {
        if repo.commits == 0 || repo.name == SPEC_REPO || absent.contains(repo.name.as_str()) {
            continue;
        }
        let held = client
            .list_commits(&repo.name, None, 0)
            .await
            .map_err(ask)?
            .len() as u64;
        if held < repo.commits {
            missing.push(format!(
                "repo {} has {held} of the dump's {} commit(s)",
                repo.name, repo.commits
            ));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(not_applied(missing.join("; ")))
    }
}

/// pachd's hidden repo of pipeline specs.
const SPEC_REPO: &str = "__spec__";

/// Up to five names, then how many more.
fn first_names(names: &[&str]) -> String {
    let mut text = names.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    if names.len() > 5 {
        text.push_str(&format!(" and {} more", names.len() - 5));
    }
    text
}

/// Refuses early, with pachd's own answer, when the target has auth active and the
/// connection's token is not a cluster admin's: pachd would refuse the Restore anyway, but
/// only after ops were already on the wire.
async fn admin_check(client: &PachdClient) -> Result<(), TransferError> {
    let refuse = |reason: String| TransferError::NotAdmin {
        address: client.address(),
        reason,
    };
    let active = match client.is_auth_active().await {
        Ok(active) => active,
        // A pachd without the auth service has no admins to check.
        Err(PachdError::Rpc {
            code: tonic::Code::Unimplemented,
            ..
        }) => false,
        Err(error) => return Err(refuse(crate::kind::chain_text(&error))),
    };
    if !active {
        return Ok(());
    }
    let who = client
        .whoami()
        .await
        .map_err(|error| refuse(crate::kind::chain_text(&error)))?;
    if who.is_admin {
        Ok(())
    } else {
        Err(refuse(format!("{} is not a cluster admin", who.username)))
    }
}
