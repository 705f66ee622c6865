//! The bucket clone: list both sides in parallel, copy what is missing or different (server
//! side when both are on one S3 endpoint, streaming otherwise), optionally mirror deletions,
//! and report. Re-running copies only what is still missing, so it is resumable by
//! construction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::Digest;
use tokio::sync::Semaphore;

use super::bucket::{Bucket, Entry};
use super::error::StoreError;
use super::s3::MAX_SINGLE_COPY;
use crate::kind::Kind;

/// How a sync runs. The defaults suit a small machine talking to a nearby endpoint.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Folders listed at the same time (per side).
    pub list_width: usize,
    /// Objects transferred at the same time (lowered automatically on throttling).
    pub transfer_width: usize,
    /// Delete destination objects that are not in the source (never after a failure).
    pub delete: bool,
    /// Refuse to delete more than this many objects.
    pub max_delete: Option<u64>,
    /// Compare content hashes, not just sizes and ETags.
    pub checksum: bool,
    /// Only work out what would change.
    pub dry_run: bool,
    /// Attempts per object after the first, for throttling and server errors (on top of
    /// the retries of single requests).
    pub retries: u32,
    /// Use server-side copy when both sides are on one S3 endpoint.
    pub server_side: bool,
    /// Streaming copies above this size use multipart uploads.
    pub multipart_threshold: u64,
    /// Part size of streaming multipart uploads.
    pub part_size: usize,
    /// Server-side copies above this size use UploadPartCopy (at most 5 GiB).
    pub copy_cutoff: u64,
    /// Part size of UploadPartCopy.
    pub copy_part_size: u64,
    /// Bytes of object data held in memory at once by streaming copies.
    pub memory_limit: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            list_width: 8,
            transfer_width: 64,
            delete: false,
            max_delete: None,
            checksum: false,
            dry_run: false,
            retries: 5,
            server_side: true,
            multipart_threshold: 16 << 20,
            part_size: 16 << 20,
            copy_cutoff: MAX_SINGLE_COPY,
            copy_part_size: 512 << 20,
            memory_limit: 512 << 20,
        }
    }
}

/// What a dry run found would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `copy` or `delete`.
    pub action: &'static str,
    /// The key (relative to both prefixes).
    pub key: String,
    /// Bytes the copy would move (0 for deletions).
    pub size: u64,
    /// Why: `missing`, `size`, `etag`, `checksum`, `extra`.
    pub reason: &'static str,
}

/// One object that could not be copied or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The key.
    pub key: String,
    /// The last error, one line.
    pub reason: String,
}

/// The outcome of a sync.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    /// Source URL.
    pub src: String,
    /// Destination URL.
    pub dst: String,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Objects copied (or that would be, in a dry run).
    pub copied: u64,
    /// Of those, copied server-side.
    pub server_side: u64,
    /// Objects already present and equal.
    pub skipped: u64,
    /// Objects that failed after retries.
    pub failed: u64,
    /// Destination objects deleted (or that would be).
    pub deleted: u64,
    /// Bytes copied (or that would be).
    pub bytes: u64,
    /// Bytes of object data that passed through this host: what streamed copies downloaded
    /// (and uploaded again). 0 when every copy was server-side.
    pub host_bytes: u64,
    /// Transient failures met during the sync, counted at two levels and summed. Requests:
    /// every HTTP response with status 408, 429 or 5xx, every request that failed to connect,
    /// was cut off or timed out, and every response body that broke off, on the requests
    /// either store made (`object_store` re-sends such requests up to its retry limit; a
    /// failed server-side copy request is retried with its object). Objects: every
    /// whole-object re-attempt after a transient error. So one fault can count at both
    /// levels, and a request's last failure counts even when nothing re-sent it. Between
    /// `file://` and `memory://` stores only object re-attempts count.
    pub retries: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// The failed keys with reasons.
    pub failures: Vec<Failure>,
    /// In a dry run, every change that would be made.
    pub changes: Vec<Change>,
    /// Why deletions were not made although asked for, if so.
    pub delete_skipped: Option<String>,
}

/// Receives progress while a sync runs. Implementations must be cheap: they are called
/// once per object.
pub trait SyncObserver: Send + Sync {
    /// More work was found: `objects` to copy totalling `bytes`.
    fn planned(&self, objects: u64, bytes: u64);
    /// An object was found equal and skipped.
    fn skipped(&self);
    /// An object was copied.
    fn copied(&self, bytes: u64);
    /// An object failed for good.
    fn failed(&self, key: &str, reason: &str);
    /// Everything is done.
    fn finished(&self, report: &SyncReport);
}

/// An observer that ignores everything.
pub struct Quiet;

impl SyncObserver for Quiet {
    fn planned(&self, _: u64, _: u64) {}
    fn skipped(&self) {}
    fn copied(&self, _: u64) {}
    fn failed(&self, _: &str, _: &str) {}
    fn finished(&self, _: &SyncReport) {}
}

/// Concurrency that halves on throttling and grows back one step per run of successes.
struct Throttle {
    semaphore: Semaphore,
    max: usize,
    current: AtomicUsize,
    debt: AtomicUsize,
    successes: AtomicUsize,
}

impl Throttle {
    fn new(width: usize) -> Throttle {
        Throttle {
            semaphore: Semaphore::new(width),
            max: width,
            current: AtomicUsize::new(width),
            debt: AtomicUsize::new(0),
            successes: AtomicUsize::new(0),
        }
    }

    async fn acquire(&self) -> tokio::sync::SemaphorePermit<'_> {
        loop {
            let permit = self
                .semaphore
                .acquire()
                .await
                .expect("the throttle's semaphore is never closed");
            let owed = self.debt.load(Ordering::SeqCst);
            if owed > 0
                && self
                    .debt
                    .compare_exchange(owed, owed - 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                permit.forget();
                continue;
            }
            return permit;
        }
    }

    fn slow_down(&self) {
        let current = self.current.load(Ordering::SeqCst);
        let target = (current / 2).max(1);
        if target < current
            && self
                .current
                .compare_exchange(current, target, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.debt.fetch_add(current - target, Ordering::SeqCst);
        }
        self.successes.store(0, Ordering::SeqCst);
    }

    fn succeeded(&self) {
        let successes = self.successes.fetch_add(1, Ordering::SeqCst) + 1;
        if successes.is_multiple_of(16) && self.current.load(Ordering::SeqCst) < self.max {
            self.current.fetch_add(1, Ordering::SeqCst);
            let owed = self.debt.load(Ordering::SeqCst);
            if owed > 0
                && self
                    .debt
                    .compare_exchange(owed, owed - 1, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                return;
            }
            self.semaphore.add_permits(1);
        }
    }
}

/// What to do with one source object.
enum Decision {
    Skip,
    Copy(&'static str),
    CompareHashes(Entry),
}

fn decide(source: &Entry, existing: Option<&Entry>, checksum: bool) -> Decision {
    let Some(existing) = existing else {
        return Decision::Copy("missing");
    };
    if existing.size != source.size {
        return Decision::Copy("size");
    }
    match (source.content_md5(), existing.content_md5()) {
        (Some(left), Some(right)) if !left.eq_ignore_ascii_case(right) => Decision::Copy("etag"),
        (Some(_), Some(_)) => Decision::Skip,
        _ if checksum => Decision::CompareHashes(existing.clone()),
        _ => Decision::Skip,
    }
}

/// Lists every object of `bucket`: the top folder level first, then each sub-folder, up to
/// `width` folders at a time.
pub fn list_parallel(
    bucket: &Bucket,
    width: usize,
) -> BoxStream<'static, Result<Entry, StoreError>> {
    let bucket = bucket.clone();
    stream::once(async move {
        let (entries, folders) = bucket.list_folder("").await?;
        let top = stream::iter(entries.into_iter().map(Ok));
        let nested = stream::iter(folders)
            .map(move |folder| bucket.list(&format!("{folder}/")))
            .flatten_unordered(width.max(1));
        Ok::<_, StoreError>(top.chain(nested))
    })
    .try_flatten()
    .boxed()
}

/// Lists `bucket` into a map from key to entry.
pub async fn index(bucket: &Bucket, width: usize) -> Result<HashMap<String, Entry>, StoreError> {
    list_parallel(bucket, width)
        .map_ok(|entry| (entry.key.clone(), entry))
        .try_collect()
        .await
}

/// Refuses a source and destination that overlap (one inside the other), comparing what
/// they physically are where that can be found out: `file://` directories with symbolic
/// links resolved, S3 endpoints by the addresses their host names resolve to (`localhost` is
/// `127.0.0.1`), and an S3 store against a `file://` directory by a probe file (see
/// [`same_files`]).
pub async fn check_disjoint(src: &Bucket, dst: &Bucket) -> Result<(), StoreError> {
    use super::location::Scheme;
    let (left, right) = (src.url(), dst.url());
    let nested = match (left.scheme, right.scheme) {
        (Scheme::File, Scheme::File) => {
            let inside =
                |outer: &std::path::Path, inner: &std::path::Path| inner.starts_with(outer);
            let (left_dir, right_dir) = (physical(&left.bucket), physical(&right.bucket));
            inside(&left_dir, &right_dir) || inside(&right_dir, &left_dir)
        }
        (Scheme::File, Scheme::S3) => same_files(src, dst).await,
        (Scheme::S3, Scheme::File) => same_files(dst, src).await,
        _ => {
            let same_endpoint = match (src.s3(), dst.s3()) {
                (Some(one), Some(other)) => same_host(one.endpoint(), other.endpoint()).await,
                _ => true,
            };
            same_endpoint && left.overlaps(right)
        }
    };
    if nested {
        return Err(StoreError::Refused(
            format!(
                "clone {left} to {right}: the destination overlaps the source (one is inside the other)"
            ),
            Kind::Invalid,
        ));
    }
    Ok(())
}

/// `dir` with symbolic links and `..` resolved through its longest existing ancestor (a
/// clone's destination may not exist yet).
fn physical(dir: &str) -> std::path::PathBuf {
    let mut existing = std::path::Path::new(dir);
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(existing) {
            let mut full = real;
            for name in rest.into_iter().rev() {
                full.push(name);
            }
            return full;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return std::path::PathBuf::from(dir),
        }
    }
}

/// Whether two endpoint URLs reach the same server: equal, or their hosts resolve to a
/// common address on the same port.
async fn same_host(one: &str, other: &str) -> bool {
    if one.trim_end_matches('/') == other.trim_end_matches('/') {
        return true;
    }
    async fn addresses(endpoint: &str) -> Vec<std::net::SocketAddr> {
        let Some((scheme, rest)) = endpoint.split_once("://") else {
            return Vec::new();
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let default_port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                match port.parse::<u16>() {
                    Ok(port) => (host, port),
                    Err(_) => (authority, default_port),
                }
            }
            _ => (authority, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match tokio::net::lookup_host((host, port)).await {
            Ok(found) => found.collect(),
            Err(_) => Vec::new(),
        }
    }
    let (one, other) = (addresses(one).await, addresses(other).await);
    one.iter().any(|address| other.contains(address))
}

/// Whether the `file://` store `local` and the S3 store `remote` share files: an S3
/// server that serves a directory (s3s-fs, MinIO in filesystem mode) shows its files as
/// objects. A uniquely named probe file is put where the other side would show it and looked
/// for there, then removed: in the nearest existing directory of `local` (is `local` inside
/// `remote`? It then shows as `remote`'s key `Q/probe` for `Q` a tail of that directory's
/// path), and in each existing `local/Q` for `Q` a tail of `remote`'s `bucket/prefix` (is
/// `remote` inside `local`?). A directory that cannot take the probe is not examined.
async fn same_files(local: &Bucket, remote: &Bucket) -> bool {
    let name = format!("ankus-overlap-probe-{}", uuid::Uuid::new_v4().simple());
    let mut nearest = physical(&local.url().bucket);
    while !nearest.is_dir() {
        if !nearest.pop() {
            return false;
        }
    }
    let parts: Vec<String> = nearest
        .components()
        .filter_map(|part| match part {
            std::path::Component::Normal(name) => Some(name.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let tails = |parts: &[String]| -> Vec<String> {
        (0..=parts.len())
            .map(|start| parts[start..].join("/"))
            .collect()
    };
    if let Some(probe) = Probe::put(&nearest, &name) {
        for tail in tails(&parts) {
            let key = if tail.is_empty() {
                name.clone()
            } else {
                format!("{tail}/{name}")
            };
            if remote.exists(&key).await.unwrap_or(false) {
                drop(probe);
                return true;
            }
        }
    }
    let url = remote.url();
    let mut remote_parts = vec![url.bucket.clone()];
    remote_parts.extend(
        url.prefix
            .split('/')
            .filter(|part| !part.is_empty())
            .map(str::to_owned),
    );
    for tail in tails(&remote_parts) {
        if tail.is_empty() {
            continue;
        }
        let dir = physical(&local.url().bucket).join(&tail);
        if !dir.is_dir() {
            continue;
        }
        if let Some(probe) = Probe::put(&dir, &name)
            && remote.exists(&name).await.unwrap_or(false)
        {
            drop(probe);
            return true;
        }
    }
    false
}

/// An empty probe file, removed when dropped.
struct Probe(std::path::PathBuf);

impl Probe {
    fn put(dir: &std::path::Path, name: &str) -> Option<Probe> {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ok()
            .map(|_| Probe(path))
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Shared {
    src: Bucket,
    dst: Bucket,
    options: SyncOptions,
    throttle: Throttle,
    memory: Semaphore,
    memory_unit: u64,
    server_side_ok: AtomicBool,
    server_side: AtomicU64,
    host_bytes: AtomicU64,
    reattempts: AtomicU64,
}

/// Clones `src` into `dst`; see the module docs.
pub async fn sync(
    src: &Bucket,
    dst: &Bucket,
    options: &SyncOptions,
    observer: &dyn SyncObserver,
) -> Result<SyncReport, StoreError> {
    check_disjoint(src, dst).await?;
    let started = Instant::now();
    // Two disjoint stores are two opened `Bucket`s, so no counter is read twice.
    let transient_before = src.transient_failures() + dst.transient_failures();
    let list_width = options.list_width.max(1);
    let transfer_width = options.transfer_width.max(1);

    // The destination index must be complete before anything is decided; the source is
    // listed meanwhile and buffered.
    let mut dst_listing = std::pin::pin!(index(dst, list_width));
    let mut src_listing = list_parallel(src, list_width).fuse();
    let mut buffered = Vec::new();
    let dst_index = loop {
        tokio::select! {
            listed = &mut dst_listing => break listed?,
            item = src_listing.next() => match item {
                Some(entry) => buffered.push(entry?),
                None => break dst_listing.await?,
            },
        }
    };
    let dst_index = Mutex::new(dst_index);

    let memory_unit = 64 << 10;
    let shared = Arc::new(Shared {
        src: src.clone(),
        dst: dst.clone(),
        options: options.clone(),
        throttle: Throttle::new(transfer_width),
        memory: Semaphore::new(
            usize::try_from(options.memory_limit.max(memory_unit) / memory_unit)
                .unwrap_or(usize::MAX >> 4),
        ),
        memory_unit,
        server_side_ok: AtomicBool::new(options.server_side),
        server_side: AtomicU64::new(0),
        host_bytes: AtomicU64::new(0),
        reattempts: AtomicU64::new(0),
    });

    let mut report = SyncReport {
        src: src.url().to_string(),
        dst: dst.url().to_string(),
        dry_run: options.dry_run,
        ..SyncReport::default()
    };
    let copied = AtomicU64::new(0);
    let skipped = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let changes: Mutex<Vec<Change>> = Mutex::new(Vec::new());
    let listing_failed: Mutex<Option<StoreError>> = Mutex::new(None);

    let entries = stream::iter(buffered.into_iter().map(Ok)).chain(src_listing);
    entries
        .filter_map(|item| {
            let step = match item {
                Ok(entry) => {
                    let existing = dst_index
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .remove(&entry.key);
                    Some((entry, existing))
                }
                Err(error) => {
                    *listing_failed
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
                    None
                }
            };
            futures::future::ready(step)
        })
        .map(|(entry, existing)| {
            let shared = Arc::clone(&shared);
            let (copied, skipped, bytes, failures, changes) =
                (&copied, &skipped, &bytes, &failures, &changes);
            async move {
                let decision = decide(&entry, existing.as_ref(), shared.options.checksum);
                let reason = match decision {
                    Decision::Skip => None,
                    Decision::Copy(reason) => Some(reason),
                    Decision::CompareHashes(existing) => {
                        match same_content(&shared.src, &shared.dst, &entry, &existing).await {
                            Ok(true) => None,
                            Ok(false) => Some("checksum"),
                            Err(error) => {
                                observer.failed(&entry.key, &error.to_string());
                                failures
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(Failure {
                                        key: entry.key.clone(),
                                        reason: crate::kind::chain_text(&error),
                                    });
                                return;
                            }
                        }
                    }
                };
                let Some(reason) = reason else {
                    skipped.fetch_add(1, Ordering::Relaxed);
                    observer.skipped();
                    return;
                };
                observer.planned(1, entry.size);
                if shared.options.dry_run {
                    copied.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(entry.size, Ordering::Relaxed);
                    changes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Change {
                            action: "copy",
                            key: entry.key.clone(),
                            size: entry.size,
                            reason,
                        });
                    observer.copied(entry.size);
                    return;
                }
                match copy_with_retries(&shared, &entry).await {
                    Ok(()) => {
                        copied.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(entry.size, Ordering::Relaxed);
                        observer.copied(entry.size);
                    }
                    Err(error) => {
                        let text = crate::kind::chain_text(&error);
                        observer.failed(&entry.key, &text);
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Failure {
                                key: entry.key.clone(),
                                reason: text,
                            });
                    }
                }
            }
        })
        .buffer_unordered(transfer_width)
        .for_each(|()| futures::future::ready(()))
        .await;

    if let Some(error) = listing_failed
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(error);
    }
    report.copied = copied.into_inner();
    report.skipped = skipped.into_inner();
    report.bytes = bytes.into_inner();
    report.failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    report
        .failures
        .sort_by(|left, right| left.key.cmp(&right.key));
    report.failed = report.failures.len() as u64;
    report.server_side = shared.server_side.load(Ordering::Relaxed);
    report.host_bytes = shared.host_bytes.load(Ordering::Relaxed);
    let mut changes = changes.into_inner().unwrap_or_else(|p| p.into_inner());

    if options.delete {
        let mut extra: Vec<String> = dst_index
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .into_keys()
            .collect();
        extra.sort();
        let listed_in_source = report.copied + report.skipped + report.failed;
        if listed_in_source == 0 && !extra.is_empty() {
            return Err(StoreError::Refused(
                format!(
                    "mirror deletions into {}: the source {} lists no objects (a missing prefix or an empty bucket?), so every one of the destination's {} object(s) would be deleted; nothing was deleted",
                    dst.url(),
                    src.url(),
                    extra.len()
                ),
                Kind::Conflict,
            ));
        }
        if report.failed > 0 {
            report.delete_skipped = Some(format!(
                "{} object(s) failed to copy; deletions are only mirrored after a clean run",
                report.failed
            ));
        } else if let Some(limit) = options
            .max_delete
            .filter(|limit| extra.len() as u64 > *limit)
        {
            return Err(StoreError::Refused(
                format!(
                    "mirror deletions into {}: {} object(s) would be deleted, more than max_delete ({limit}); nothing was deleted ({} copied, {} skipped)",
                    dst.url(),
                    extra.len(),
                    report.copied,
                    report.skipped
                ),
                Kind::Conflict,
            ));
        } else if options.dry_run {
            report.deleted = extra.len() as u64;
            changes.extend(extra.into_iter().map(|key| Change {
                action: "delete",
                key,
                size: 0,
                reason: "extra",
            }));
        } else {
            let (deleted, failures) = delete_all(dst, extra, transfer_width).await?;
            report.deleted = deleted;
            report.failed += failures.len() as u64;
            report.failures.extend(failures);
        }
    }
    changes.sort_by(|left, right| (left.action, &left.key).cmp(&(right.action, &right.key)));
    report.changes = changes;
    report.retries = (src.transient_failures() + dst.transient_failures())
        .saturating_sub(transient_before)
        + shared.reattempts.load(Ordering::Relaxed);
    report.seconds = started.elapsed().as_secs_f64();
    observer.finished(&report);
    Ok(report)
}

async fn delete_all(
    dst: &Bucket,
    keys: Vec<String>,
    width: usize,
) -> Result<(u64, Vec<Failure>), StoreError> {
    let mut paths = Vec::with_capacity(keys.len());
    for key in &keys {
        paths.push(dst.path(key)?);
    }
    let results: Vec<(String, Result<(), StoreError>)> = stream::iter(keys.into_iter().zip(paths))
        .map(|(key, path)| async move {
            let outcome = match dst.object_store().delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(StoreError::from_object_store(
                    "delete",
                    dst.url().join(&key),
                    error,
                )),
            };
            (key, outcome)
        })
        .buffer_unordered(width)
        .collect()
        .await;
    let mut deleted = 0;
    let mut failures = Vec::new();
    for (key, outcome) in results {
        match outcome {
            Ok(()) => deleted += 1,
            Err(error) => failures.push(Failure {
                key,
                reason: crate::kind::chain_text(&error),
            }),
        }
    }
    Ok((deleted, failures))
}

async fn copy_with_retries(shared: &Shared, entry: &Entry) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        let permit = shared.throttle.acquire().await;
        let outcome = copy_one(shared, entry).await;
        drop(permit);
        match outcome {
            Ok(()) => {
                shared.throttle.succeeded();
                return Ok(());
            }
            Err(error) if error.is_transient() && attempt < shared.options.retries => {
                shared.throttle.slow_down();
                let base = 100u64 << attempt.min(6);
                let jitter = rand::random_range(0..=base);
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                attempt += 1;
                shared.reattempts.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => return Err(error),
        }
    }
}

async fn copy_one(shared: &Shared, entry: &Entry) -> Result<(), StoreError> {
    let (src, dst) = (&shared.src, &shared.dst);
    let source_path = src.path(&entry.key)?;
    let target_path = dst.path(&entry.key)?;
    if shared.server_side_ok.load(Ordering::Relaxed)
        && let (Some(source), Some(target)) = (src.s3(), dst.s3())
        && target.can_copy_from(source)
    {
        let cutoff = shared.options.copy_cutoff.min(MAX_SINGLE_COPY);
        let outcome = if entry.size <= cutoff {
            target
                .copy_object(source, source_path.as_ref(), target_path.as_ref())
                .await
        } else {
            target
                .copy_multipart(
                    source,
                    source_path.as_ref(),
                    target_path.as_ref(),
                    entry.size,
                    shared.options.copy_part_size.max(5 << 20),
                )
                .await
        };
        match outcome {
            Ok(()) => {
                shared.server_side.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            // Credentials that cannot read the source from the destination's side (or a
            // server without copy support): stream instead, for this and later objects.
            Err(failure) if failure.rules_out_server_side() => {
                shared.server_side_ok.store(false, Ordering::Relaxed);
            }
            Err(failure) => return Err(failure.into_error("copy", dst.url().join(&entry.key))),
        }
    }
    stream_copy(shared, entry, &source_path, &target_path).await
}

fn memory_permits(shared: &Shared, bytes: u64) -> u32 {
    let units = bytes.div_ceil(shared.memory_unit).max(1);
    let total = shared.options.memory_limit.max(shared.memory_unit) / shared.memory_unit;
    u32::try_from(units.min(total)).unwrap_or(u32::MAX)
}

async fn stream_copy(
    shared: &Shared,
    entry: &Entry,
    source_path: &object_store::path::Path,
    target_path: &object_store::path::Path,
) -> Result<(), StoreError> {
    let (src, dst) = (&shared.src, &shared.dst);
    let source_url = || src.url().join(&entry.key);
    let target_url = || dst.url().join(&entry.key);
    if entry.size <= shared.options.multipart_threshold {
        let _memory = shared
            .memory
            .acquire_many(memory_permits(shared, entry.size))
            .await
            .expect("the memory semaphore is never closed");
        let data = src
            .object_store()
            .get(source_path)
            .await
            .map_err(|error| StoreError::from_object_store("get", source_url(), error))?
            .bytes()
            .await
            .map_err(|error| StoreError::from_object_store("get", source_url(), error))?;
        shared
            .host_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let options = object_store::PutOptions::from(dst.write_attributes());
        dst.object_store()
            .put_opts(target_path, PutPayload::from_bytes(data), options)
            .await
            .map_err(|error| StoreError::from_object_store("put", target_url(), error))?;
        return Ok(());
    }
    const PARTS_IN_FLIGHT: usize = 2;
    let part_size = shared.options.part_size.max(5 << 20);
    let _memory = shared
        .memory
        .acquire_many(memory_permits(
            shared,
            (part_size * (PARTS_IN_FLIGHT + 2)) as u64,
        ))
        .await
        .expect("the memory semaphore is never closed");
    let mut body = src
        .object_store()
        .get(source_path)
        .await
        .map_err(|error| StoreError::from_object_store("get", source_url(), error))?
        .into_stream();
    let upload = dst
        .object_store()
        .put_multipart_opts(
            target_path,
            object_store::PutMultipartOptions::from(dst.write_attributes()),
        )
        .await
        .map_err(|error| StoreError::from_object_store("start upload", target_url(), error))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
    let copied: Result<(), StoreError> = async {
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|error| StoreError::from_object_store("get", source_url(), error))?;
            shared
                .host_bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            writer
                .wait_for_capacity(PARTS_IN_FLIGHT)
                .await
                .map_err(|error| {
                    StoreError::from_object_store("upload part", target_url(), error)
                })?;
            writer.put(chunk);
        }
        Ok(())
    }
    .await;
    match copied {
        Ok(()) => {
            writer.finish().await.map_err(|error| {
                StoreError::from_object_store("complete upload", target_url(), error)
            })?;
            Ok(())
        }
        Err(error) => {
            // Leaves no partial object behind; the upload was never completed.
            let _ = writer.abort().await;
            Err(error)
        }
    }
}

/// Whether two objects have the same content: by MD5 ETags when both have them, otherwise
/// by SHA-256 of both bodies.
pub async fn same_content(
    src: &Bucket,
    dst: &Bucket,
    left: &Entry,
    right: &Entry,
) -> Result<bool, StoreError> {
    if left.size != right.size {
        return Ok(false);
    }
    if let (Some(a), Some(b)) = (left.content_md5(), right.content_md5()) {
        return Ok(a.eq_ignore_ascii_case(b));
    }
    let (a, b) = futures::try_join!(sha256(src, &left.key), sha256(dst, &right.key))?;
    Ok(a == b)
}

/// SHA-256 of one object's content, streamed.
pub async fn sha256(bucket: &Bucket, key: &str) -> Result<[u8; 32], StoreError> {
    let path = bucket.path(key)?;
    let target = || bucket.url().join(key);
    let mut body = bucket
        .object_store()
        .get(&path)
        .await
        .map_err(|error| StoreError::from_object_store("get", target(), error))?
        .into_stream();
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = body.next().await {
        hasher
            .update(chunk.map_err(|error| StoreError::from_object_store("get", target(), error))?);
    }
    Ok(hasher.finalize().into())
}

impl SyncReport {
    /// One line for people: counts, bytes, time.
    pub fn summary(&self) -> String {
        let verb = if self.dry_run { "would copy" } else { "copied" };
        let mut text = format!(
            "{} -> {}: {verb} {} ({}), skipped {}, failed {}",
            self.src,
            self.dst,
            self.copied,
            human_bytes(self.bytes),
            self.skipped,
            self.failed
        );
        if self.deleted > 0 {
            let verb = if self.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            text.push_str(&format!(", {verb} {}", self.deleted));
        }
        if self.retries > 0 {
            text.push_str(&format!(", {} retries", self.retries));
        }
        text.push_str(&format!(" in {:.1}s", self.seconds));
        if self.server_side > 0 {
            text.push_str(&format!(" ({} server-side)", self.server_side));
        }
        if !self.dry_run && self.copied > 0 {
            text.push_str(&format!(
                ", {} through this host",
                human_bytes(self.host_bytes)
            ));
        }
        text
    }

    /// Whether the sync failed for any object.
    pub fn is_clean(&self) -> bool {
        self.failed == 0
    }
}

/// Bytes with a binary unit, one decimal.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, size: u64, etag: Option<&str>) -> Entry {
        Entry {
            key: key.to_owned(),
            size,
            etag: etag.map(str::to_owned),
            last_modified: String::new(),
        }
    }

    #[test]
    fn decide_compares_size_then_comparable_etags() {
        let md5_a = "0123456789abcdef0123456789abcdef";
        let md5_b = "fedcba9876543210fedcba9876543210";
        let source = entry("k", 3, Some(md5_a));
        assert!(matches!(
            decide(&source, None, false),
            Decision::Copy("missing")
        ));
        assert!(matches!(
            decide(&source, Some(&entry("k", 4, Some(md5_a))), false),
            Decision::Copy("size")
        ));
        assert!(matches!(
            decide(&source, Some(&entry("k", 3, Some(md5_b))), false),
            Decision::Copy("etag")
        ));
        assert!(matches!(
            decide(&source, Some(&entry("k", 3, Some(md5_a))), true),
            Decision::Skip
        ));
        // A multipart ETag says nothing about content equality.
        let multipart = entry("k", 3, Some("0123456789abcdef0123456789abcdef-2"));
        assert!(matches!(
            decide(&source, Some(&multipart), false),
            Decision::Skip
        ));
        assert!(matches!(
            decide(&source, Some(&multipart), true),
            Decision::CompareHashes(_)
        ));
    }

    #[tokio::test]
    async fn throttle_halves_and_recovers() {
        let throttle = Throttle::new(8);
        throttle.slow_down();
        assert_eq!(throttle.current.load(Ordering::SeqCst), 4);
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(throttle.acquire().await);
        }
        assert!(
            throttle.semaphore.try_acquire().is_err(),
            "only 4 permits usable"
        );
        drop(held);
        for _ in 0..16 {
            throttle.succeeded();
        }
        assert_eq!(throttle.current.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn streamed_copies_count_the_bytes_that_passed_through_this_host() {
        let options = crate::store::StoreOptions::default();
        let src = Bucket::open("memory://host-bytes-src", &options).expect("source opens");
        let dst = Bucket::open("memory://host-bytes-dst", &options).expect("destination opens");
        src.put_bytes("small", bytes::Bytes::from(vec![1u8; 1000]))
            .await
            .expect("put small");
        src.put_bytes("large", bytes::Bytes::from(vec![2u8; 6 << 20]))
            .await
            .expect("put large");
        let sync_options = SyncOptions {
            multipart_threshold: 5 << 20,
            part_size: 5 << 20,
            ..SyncOptions::default()
        };
        let report = sync(&src, &dst, &sync_options, &Quiet)
            .await
            .expect("sync succeeds");
        assert_eq!(report.copied, 2);
        assert_eq!(report.server_side, 0);
        assert_eq!(report.host_bytes, 1000 + (6 << 20));
        assert!(
            report.summary().ends_with(", 6.0 MiB through this host"),
            "{}",
            report.summary()
        );

        let again = sync(&src, &dst, &sync_options, &Quiet)
            .await
            .expect("re-sync succeeds");
        assert_eq!((again.copied, again.skipped, again.host_bytes), (0, 2, 0));
    }

    #[test]
    fn summary_counts_retries_only_when_there_were_some() {
        let mut report = SyncReport {
            src: "s3://a".to_owned(),
            dst: "s3://b".to_owned(),
            copied: 3,
            bytes: 3,
            host_bytes: 3,
            ..SyncReport::default()
        };
        assert_eq!(
            report.summary(),
            "s3://a -> s3://b: copied 3 (3 B), skipped 0, failed 0 in 0.0s, 3 B through this host"
        );
        report.retries = 7;
        assert_eq!(
            report.summary(),
            "s3://a -> s3://b: copied 3 (3 B), skipped 0, failed 0, 7 retries in 0.0s, 3 B through this host"
        );
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
