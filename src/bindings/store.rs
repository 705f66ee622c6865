//! The `store` package: object storage for scripts. `store::open(url)` gives a `Store`; its
//! methods read, write and list objects, clone one store into another (`sync_to`) and verify
//! a clone. Every mutation passes the dry-run gate.

use std::io::IsTerminal;
use std::sync::Arc;

use rhai::plugin::*;
use rhai::{Array, CustomType, Dynamic, Map, Position, TypeBuilder};

use crate::host::context::{HostCtx, OutputMode, Verbosity};
use crate::host::error::{BindingResult, script_error, script_fail};
use crate::kind::Kind;
use crate::store::sync::{Change, SyncObserver};
use crate::store::{
    Bucket, Entry, StoreOptions, SyncOptions, SyncReport, VerifyOptions, VerifyReport,
};

/// A store opened at a URL, as scripts hold it.
#[derive(Clone)]
pub struct Store {
    bucket: Bucket,
    options: StoreOptions,
}

impl CustomType for Store {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("Store")
            .with_get("url", |store: &mut Store| store.bucket.url().to_string())
            .with_fn("to_string", |store: &mut Store| {
                format!("Store({})", store.bucket.url())
            })
            .with_fn("to_debug", |store: &mut Store| {
                format!("Store({})", store.bucket.describe())
            })
            .with_fn("to_map", |store: &mut Store| {
                let mut map = Map::new();
                map.insert("url".into(), store.bucket.url().to_string().into());
                map
            })
            .and_comments(&[
                "/// The store as a map: its URL (never credentials).",
                "///",
                "/// ```rhai",
                "/// print(store::open(\"memory://\").to_map());",
                "/// ```",
            ]);
    }
}

/// One object's metadata.
#[derive(Clone)]
pub struct ObjectInfo(Entry);

impl ObjectInfo {
    fn to_map(&self) -> Map {
        let mut map = Map::new();
        map.insert("key".into(), self.0.key.clone().into());
        map.insert("size".into(), int(self.0.size).into());
        map.insert(
            "etag".into(),
            self.0.etag.clone().map_or(Dynamic::UNIT, Dynamic::from),
        );
        map.insert("last_modified".into(), self.0.last_modified.clone().into());
        map
    }
}

impl CustomType for ObjectInfo {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("ObjectInfo")
            .with_get("key", |info: &mut ObjectInfo| info.0.key.clone())
            .with_get("size", |info: &mut ObjectInfo| int(info.0.size))
            .with_get("etag", |info: &mut ObjectInfo| {
                info.0.etag.clone().map_or(Dynamic::UNIT, Dynamic::from)
            })
            .with_get("last_modified", |info: &mut ObjectInfo| {
                info.0.last_modified.clone()
            })
            .with_fn("to_string", |info: &mut ObjectInfo| {
                format!("{} ({} bytes)", info.0.key, info.0.size)
            })
            .with_fn("to_debug", |info: &mut ObjectInfo| {
                format!("ObjectInfo({:?})", info.0)
            })
            .with_fn("to_map", |info: &mut ObjectInfo| info.to_map())
            .and_comments(&[
                "/// The object as a map: key, size, etag, last_modified.",
                "///",
                "/// ```rhai",
                "/// for o in store::open(\"memory://\").list(\"\") { print(o.to_map()); }",
                "/// ```",
            ]);
    }
}

/// A lazy listing: each `for` loop over it lists the store afresh, page by page.
#[derive(Clone)]
pub struct Listing {
    bucket: Bucket,
    prefix: String,
}

impl CustomType for Listing {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("Listing")
            .with_fn("to_string", |listing: &mut Listing| {
                format!("Listing({})", listing.bucket.url().join(&listing.prefix))
            });
    }
}

/// Blocks the script thread on the next listed object; a background task pages the listing
/// into a small channel, so memory stays bounded whatever the store's size.
pub struct ListingIter {
    receiver: tokio::sync::mpsc::Receiver<Result<Entry, crate::store::StoreError>>,
}

impl IntoIterator for Listing {
    type Item = BindingResult<ObjectInfo>;
    type IntoIter = ListingIter;

    fn into_iter(self) -> ListingIter {
        use futures::StreamExt;
        let (sender, receiver) = tokio::sync::mpsc::channel(1000);
        crate::host::runtime::spawn(async move {
            let mut listed = self.bucket.list(&self.prefix);
            while let Some(item) = listed.next().await {
                let stop = item.is_err();
                if sender.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        ListingIter { receiver }
    }
}

impl Iterator for ListingIter {
    type Item = BindingResult<ObjectInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        self.receiver.blocking_recv().map(|item| {
            item.map(ObjectInfo)
                .map_err(|error| script_error(error, Position::NONE))
        })
    }
}

fn int(value: u64) -> rhai::INT {
    rhai::INT::try_from(value).unwrap_or(rhai::INT::MAX)
}

fn strings(items: &[String]) -> Array {
    items.iter().cloned().map(Dynamic::from).collect()
}

fn change_map(change: &Change) -> Dynamic {
    let mut map = Map::new();
    map.insert("action".into(), change.action.into());
    map.insert("key".into(), change.key.clone().into());
    map.insert("size".into(), int(change.size).into());
    map.insert("reason".into(), change.reason.into());
    map.into()
}

/// What `sync_to` returns.
#[derive(Clone)]
pub struct SyncResult(Arc<SyncReport>);

impl SyncResult {
    fn failures(&self) -> Array {
        self.0
            .failures
            .iter()
            .map(|failure| {
                let mut map = Map::new();
                map.insert("key".into(), failure.key.clone().into());
                map.insert("reason".into(), failure.reason.clone().into());
                Dynamic::from(map)
            })
            .collect()
    }

    fn to_map(&self) -> Map {
        let report = &self.0;
        let mut map = Map::new();
        map.insert("src".into(), report.src.clone().into());
        map.insert("dst".into(), report.dst.clone().into());
        map.insert("dry_run".into(), report.dry_run.into());
        map.insert("ok".into(), report.is_clean().into());
        map.insert("copied".into(), int(report.copied).into());
        map.insert("server_side".into(), int(report.server_side).into());
        map.insert("skipped".into(), int(report.skipped).into());
        map.insert("failed".into(), int(report.failed).into());
        map.insert("deleted".into(), int(report.deleted).into());
        map.insert("bytes".into(), int(report.bytes).into());
        map.insert("host_bytes".into(), int(report.host_bytes).into());
        map.insert("retries".into(), int(report.retries).into());
        map.insert("seconds".into(), report.seconds.into());
        map.insert("failures".into(), self.failures().into());
        map.insert(
            "delete_skipped".into(),
            report
                .delete_skipped
                .clone()
                .map_or(Dynamic::UNIT, Dynamic::from),
        );
        if report.dry_run {
            map.insert(
                "changes".into(),
                report
                    .changes
                    .iter()
                    .map(change_map)
                    .collect::<Array>()
                    .into(),
            );
        }
        map
    }
}

impl CustomType for SyncResult {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("SyncReport")
            .with_get("ok", |r: &mut SyncResult| r.0.is_clean())
            .with_get("dry_run", |r: &mut SyncResult| r.0.dry_run)
            .with_get("copied", |r: &mut SyncResult| int(r.0.copied))
            .with_get("server_side", |r: &mut SyncResult| int(r.0.server_side))
            .with_get("skipped", |r: &mut SyncResult| int(r.0.skipped))
            .with_get("failed", |r: &mut SyncResult| int(r.0.failed))
            .with_get("deleted", |r: &mut SyncResult| int(r.0.deleted))
            .with_get("bytes", |r: &mut SyncResult| int(r.0.bytes))
            .with_get("host_bytes", |r: &mut SyncResult| int(r.0.host_bytes))
            .with_get("retries", |r: &mut SyncResult| int(r.0.retries))
            .with_get("seconds", |r: &mut SyncResult| r.0.seconds)
            .with_get("failures", |r: &mut SyncResult| r.failures())
            .with_get("changes", |r: &mut SyncResult| {
                r.0.changes.iter().map(change_map).collect::<Array>()
            })
            .with_get("delete_skipped", |r: &mut SyncResult| {
                r.0.delete_skipped
                    .clone()
                    .map_or(Dynamic::UNIT, Dynamic::from)
            })
            .with_fn("to_string", |r: &mut SyncResult| r.to_text())
            .with_fn("to_debug", |r: &mut SyncResult| {
                format!("SyncReport({})", r.0.summary())
            })
            .with_fn("to_map", |r: &mut SyncResult| r.to_map())
            .and_comments(&[
                "/// The sync report as a map: copied, skipped, failed, bytes, host_bytes, retries, seconds, failures.",
                "///",
                "/// ```rhai",
                "/// print(src.sync_to(\"memory://b\", #{}).to_map());",
                "/// ```",
            ]);
    }
}

impl SyncResult {
    fn to_text(&self) -> String {
        let mut text = self.0.summary();
        for failure in &self.0.failures {
            text.push_str(&format!("\n  failed: {}: {}", failure.key, failure.reason));
        }
        if let Some(reason) = &self.0.delete_skipped {
            text.push_str(&format!("\n  deletions skipped: {reason}"));
        }
        text
    }
}

/// What `verify_clone` returns.
#[derive(Clone)]
pub struct VerifyResult(Arc<VerifyReport>);

impl VerifyResult {
    fn to_map(&self) -> Map {
        let report = &self.0;
        let mut map = Map::new();
        map.insert("src".into(), report.src.clone().into());
        map.insert("dst".into(), report.dst.clone().into());
        map.insert("ok".into(), report.is_ok().into());
        map.insert("src_objects".into(), int(report.src_objects).into());
        map.insert("dst_objects".into(), int(report.dst_objects).into());
        map.insert("missing".into(), strings(&report.missing).into());
        map.insert("different".into(), strings(&report.different).into());
        map.insert("extra".into(), int(report.extra).into());
        map.insert(
            "references_checked".into(),
            int(report.references_checked).into(),
        );
        map.insert(
            "missing_references".into(),
            strings(&report.missing_references).into(),
        );
        map
    }
}

impl CustomType for VerifyResult {
    fn build(mut builder: TypeBuilder<Self>) {
        builder
            .with_name("VerifyReport")
            .with_get("ok", |r: &mut VerifyResult| r.0.is_ok())
            .with_get("src_objects", |r: &mut VerifyResult| int(r.0.src_objects))
            .with_get("dst_objects", |r: &mut VerifyResult| int(r.0.dst_objects))
            .with_get("missing", |r: &mut VerifyResult| strings(&r.0.missing))
            .with_get("different", |r: &mut VerifyResult| strings(&r.0.different))
            .with_get("extra", |r: &mut VerifyResult| int(r.0.extra))
            .with_get("references_checked", |r: &mut VerifyResult| {
                int(r.0.references_checked)
            })
            .with_get("missing_references", |r: &mut VerifyResult| {
                strings(&r.0.missing_references)
            })
            .with_fn("to_string", |r: &mut VerifyResult| r.0.summary())
            .with_fn("to_debug", |r: &mut VerifyResult| {
                format!("VerifyReport({})", r.0.summary())
            })
            .with_fn("to_map", |r: &mut VerifyResult| r.to_map())
            .and_comments(&[
                "/// The verification report as a map: ok, missing, different, extra.",
                "///",
                "/// ```rhai",
                "/// print(src.verify_clone(\"memory://b\", #{}).to_map());",
                "/// ```",
            ]);
    }
}

/// Registers the package's types and the listing iterator.
pub fn register_types(engine: &mut rhai::Engine) {
    engine.build_type::<Store>();
    engine.build_type::<ObjectInfo>();
    engine.build_type::<Listing>();
    engine.build_type::<SyncResult>();
    engine.build_type::<VerifyResult>();
    engine.register_iterator_result::<Listing, ObjectInfo>();
}

/// Converts an options map to the strings the client takes.
fn store_options(map: &Map, position: Position) -> BindingResult<StoreOptions> {
    let mut options = StoreOptions::new();
    for (key, value) in map {
        if value.is_map() || value.is_array() {
            return Err(script_fail(
                Kind::Invalid,
                format!("store option '{key}' must be a string, number or bool"),
                position,
            ));
        }
        options.insert(key.to_string(), value.to_string());
    }
    Ok(options)
}

fn open_store(
    host: &HostCtx,
    url: &str,
    options: StoreOptions,
    position: Position,
) -> BindingResult<Store> {
    crate::bindings::local_target(host, url, position)?;
    let bucket = Bucket::open(url, &options).map_err(|error| script_error(error, position))?;
    Ok(Store { bucket, options })
}

/// The destination of a clone or a verify, opened.
struct Destination {
    bucket: Bucket,
    /// A `file://` directory that does not exist yet: `bucket` is then an empty stand-in,
    /// and the directory is created only when a real clone is about to write into it.
    missing: Option<(String, StoreOptions)>,
}

impl Destination {
    fn url(&self) -> String {
        match &self.missing {
            Some((url, _)) => url.clone(),
            None => self.bucket.url().to_string(),
        }
    }
}

/// Opens the destination of a clone: with `dst_options`, or else the source's options when
/// both are the same kind of store. A `file://` destination that does not exist is not
/// created here (a dry or failed run creates nothing); it reads as empty.
fn open_destination(
    host: &HostCtx,
    source: &Store,
    url: &str,
    dst_options: Option<StoreOptions>,
    position: Position,
) -> BindingResult<Destination> {
    crate::bindings::local_target(host, url, position)?;
    let parsed =
        crate::store::StoreUrl::parse(url).map_err(|error| script_error(error, position))?;
    let options = match dst_options {
        Some(options) => options,
        None if parsed.scheme == source.bucket.url().scheme => source.options.clone(),
        None => StoreOptions::new(),
    };
    if parsed.scheme == crate::store::location::Scheme::File
        && !std::path::Path::new(&parsed.bucket).exists()
    {
        let stand_in = format!("memory://ankus-missing-{}", uuid::Uuid::new_v4().simple());
        let bucket = Bucket::open(&stand_in, &StoreOptions::new())
            .map_err(|error| script_error(error, position))?;
        return Ok(Destination {
            bucket,
            missing: Some((parsed.to_string(), options)),
        });
    }
    let bucket = Bucket::open(url, &options).map_err(|error| script_error(error, position))?;
    Ok(Destination {
        bucket,
        missing: None,
    })
}

/// Creates the missing directories of `dir`, returning those it created, deepest last.
fn create_dirs(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor.filter(|path| !path.exists()) {
        missing.push(path.to_path_buf());
        cursor = path.parent();
    }
    missing.reverse();
    std::fs::create_dir_all(dir)?;
    Ok(missing)
}

/// Removes the directories `create_dirs` made, deepest first, where they are still empty.
fn remove_created(created: &[std::path::PathBuf]) {
    for dir in created.iter().rev() {
        if std::fs::remove_dir(dir).is_err() {
            break;
        }
    }
}

fn option_int(map: &Map, key: &str, position: Position) -> BindingResult<Option<u64>> {
    match map.get(key) {
        None => Ok(None),
        Some(value) if value.is_unit() => Ok(None),
        Some(value) => value
            .as_int()
            .ok()
            .and_then(|number| u64::try_from(number).ok())
            .map(Some)
            .ok_or_else(|| {
                script_fail(
                    Kind::Invalid,
                    format!("option '{key}' must be a non-negative integer"),
                    position,
                )
            }),
    }
}

fn option_bool(map: &Map, key: &str, position: Position) -> BindingResult<Option<bool>> {
    match map.get(key) {
        None => Ok(None),
        Some(value) => value.as_bool().map(Some).map_err(|_| {
            script_fail(
                Kind::Invalid,
                format!("option '{key}' must be true or false"),
                position,
            )
        }),
    }
}

const SYNC_OPTIONS: &[&str] = &[
    "transfers",
    "checkers",
    "delete",
    "max_delete",
    "checksum",
    "retries",
    "server_side",
    "multipart_threshold",
    "part_size",
    "copy_cutoff",
    "copy_part_size",
    "memory_limit",
    "dst_options",
];

fn sync_options(map: &Map, position: Position) -> BindingResult<SyncOptions> {
    if let Some(unknown) = map.keys().find(|key| !SYNC_OPTIONS.contains(&key.as_str())) {
        return Err(script_fail(
            Kind::Invalid,
            format!(
                "unknown sync option '{unknown}' (known: {})",
                SYNC_OPTIONS.join(", ")
            ),
            position,
        ));
    }
    let mut options = SyncOptions::default();
    let size = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
    if let Some(value) = option_int(map, "transfers", position)? {
        options.transfer_width = size(value).max(1);
    }
    if let Some(value) = option_int(map, "checkers", position)? {
        options.list_width = size(value).max(1);
    }
    if let Some(value) = option_bool(map, "delete", position)? {
        options.delete = value;
    }
    options.max_delete = option_int(map, "max_delete", position)?;
    if let Some(value) = option_bool(map, "checksum", position)? {
        options.checksum = value;
    }
    if let Some(value) = option_int(map, "retries", position)? {
        options.retries = u32::try_from(value).unwrap_or(u32::MAX);
    }
    if let Some(value) = option_bool(map, "server_side", position)? {
        options.server_side = value;
    }
    if let Some(value) = option_int(map, "multipart_threshold", position)? {
        options.multipart_threshold = value;
    }
    if let Some(value) = option_int(map, "part_size", position)? {
        options.part_size = size(value);
    }
    if let Some(value) = option_int(map, "copy_cutoff", position)? {
        options.copy_cutoff = value;
    }
    if let Some(value) = option_int(map, "copy_part_size", position)? {
        options.copy_part_size = value;
    }
    if let Some(value) = option_int(map, "memory_limit", position)? {
        options.memory_limit = value;
    }
    Ok(options)
}

fn observer_for(host: &HostCtx, label: &str) -> Box<dyn SyncObserver> {
    if host.is_dry_run() {
        return Box::new(crate::store::sync::Quiet);
    }
    match host.options().output {
        OutputMode::Json => Box::new(crate::store::progress::SyncProgress::json(
            host.options().stderr.clone(),
        )),
        OutputMode::Text
            if host.options().verbosity >= Verbosity::Normal && std::io::stderr().is_terminal() =>
        {
            Box::new(crate::store::progress::SyncProgress::terminal(label))
        }
        OutputMode::Text => Box::new(crate::store::sync::Quiet),
    }
}

fn run_sync(
    call: &NativeCallContext,
    source: &Store,
    destination: Destination,
    map: &Map,
) -> BindingResult<SyncResult> {
    let position = call.call_position();
    let host = HostCtx::of(call)?;
    let mut options = sync_options(map, position)?;
    let dst_url = destination.url();
    let entry = crate::host::plan::PlanEntry::new("store", "sync", dst_url.clone()).with_details(
        serde_json::json!({
            "from": source.bucket.url().to_string(),
            "delete": options.delete,
            "checksum": options.checksum,
        }),
    );
    options.dry_run = !host.may_change(entry);
    let mut created = Vec::new();
    let bucket = match destination.missing {
        Some((url, mut dst_options)) if !options.dry_run => {
            let parsed = crate::store::StoreUrl::parse(&url)
                .map_err(|error| script_error(error, position))?;
            created = create_dirs(std::path::Path::new(&parsed.bucket)).map_err(|error| {
                script_fail(
                    Kind::Io,
                    format!("failed to create directory {url}: {error}"),
                    position,
                )
            })?;
            dst_options.remove("create");
            match Bucket::open(&url, &dst_options) {
                Ok(bucket) => bucket,
                Err(error) => {
                    remove_created(&created);
                    return Err(script_error(error, position));
                }
            }
        }
        _ => destination.bucket,
    };
    let observer = observer_for(&host, "clone");
    let src = source.bucket.clone();
    let outcome = host.block_on_for(
        async move { crate::store::sync(&src, &bucket, &options, observer.as_ref()).await },
        None,
        position,
    );
    // A clone that failed, or copied nothing it was asked to, leaves no directory it made.
    let empty_handed = match &outcome {
        Ok(Ok(report)) => report.failed > 0,
        _ => true,
    };
    if empty_handed {
        remove_created(&created);
    }
    let mut report = outcome?.map_err(|error| script_error(error, position))?;
    report.dst = dst_url;
    if report.dry_run {
        for change in &report.changes {
            let target = crate::store::StoreUrl::parse(&report.dst)
                .map(|url| url.join(&change.key))
                .unwrap_or_else(|_| change.key.clone());
            let details = match change.action {
                "copy" => serde_json::json!({
                    "from": crate::store::StoreUrl::parse(&report.src).map(|url| url.join(&change.key)).unwrap_or_default(),
                    "bytes": change.size,
                    "reason": change.reason,
                }),
                _ => serde_json::json!({ "reason": change.reason }),
            };
            host.may_change(
                crate::host::plan::PlanEntry::new("store", change.action, target)
                    .with_details(details),
            );
        }
    } else {
        host.info(&report.summary());
    }
    Ok(SyncResult(Arc::new(report)))
}

fn references_from(
    host: &HostCtx,
    map: &Map,
    position: Position,
) -> BindingResult<Vec<crate::store::Reference>> {
    let mut references = Vec::new();
    if let Some(list) = map.get("references") {
        let items = list.as_array_ref().map_err(|_| {
            script_fail(
                Kind::Invalid,
                "option 'references' must be an array of \"block/<id>\"-style strings",
                position,
            )
        })?;
        for item in items.iter() {
            let text = item.clone().into_string().map_err(|_| {
                script_fail(
                    Kind::Invalid,
                    "every reference must be a string like \"block/<id>\"",
                    position,
                )
            })?;
            references.push(
                crate::store::Reference::parse(&text)
                    .map_err(|error| script_error(error, position))?,
            );
        }
    }
    if let Some(source) = map.get("backup") {
        // A path or URL; a local one (a path, `file://`) passes the path policy first.
        let source = source.to_string();
        crate::bindings::local_target(host, &source, position)?;
        references.extend(
            crate::store::referenced_keys_from_backup(&source)
                .map_err(|error| script_error(error, position))?,
        );
    }
    Ok(references)
}

fn run_verify(
    call: &NativeCallContext,
    source: &Store,
    destination: Destination,
    map: &Map,
) -> BindingResult<VerifyResult> {
    let dst_url = destination.url();
    let destination = destination.bucket;
    let position = call.call_position();
    if let Some(unknown) = map.keys().find(|key| {
        ![
            "checksum",
            "references",
            "backup",
            "checkers",
            "dst_options",
        ]
        .contains(&key.as_str())
    }) {
        return Err(script_fail(
            Kind::Invalid,
            format!(
                "unknown verify option '{unknown}' (known: checksum, references, backup, checkers, dst_options)"
            ),
            position,
        ));
    }
    let host = HostCtx::of(call)?;
    let mut options = VerifyOptions::default();
    if let Some(value) = option_bool(map, "checksum", position)? {
        options.checksum = value;
    }
    if let Some(value) = option_int(map, "checkers", position)? {
        options.width = usize::try_from(value).unwrap_or(usize::MAX).max(1);
    }
    let references = references_from(&host, map, position)?;
    let src = source.bucket.clone();
    let report = host
        .block_on_for(
            async move { crate::store::verify_clone(&src, &destination, &options, references).await },
            None,
            position,
        )?
        .map_err(|error| script_error(error, position))?;
    let report = VerifyReport {
        dst: dst_url,
        ..report
    };
    Ok(VerifyResult(Arc::new(report)))
}

fn dst_options(map: &Map, position: Position) -> BindingResult<Option<StoreOptions>> {
    match map.get("dst_options") {
        None => Ok(None),
        Some(value) => {
            let inner = value.read_lock::<Map>().ok_or_else(|| {
                script_fail(
                    Kind::Invalid,
                    "option 'dst_options' must be a map",
                    position,
                )
            })?;
            store_options(&inner, position).map(Some)
        }
    }
}

fn put(
    call: &NativeCallContext,
    store: &Store,
    key: &str,
    data: bytes::Bytes,
) -> BindingResult<()> {
    let host = HostCtx::of(call)?;
    let position = call.call_position();
    store
        .bucket
        .path(key)
        .map_err(|error| script_error(error, position))?;
    let entry = crate::host::plan::PlanEntry::new("store", "put", store.bucket.url().join(key))
        .with_details(serde_json::json!({ "bytes": data.len() }));
    if !host.may_change(entry) {
        return Ok(());
    }
    let (bucket, key) = (store.bucket.clone(), key.to_owned());
    host.block_on(async move { bucket.put_bytes(&key, data).await }, position)?
        .map_err(|error| script_error(error, position))
}

fn get_bytes(call: &NativeCallContext, store: &Store, key: &str) -> BindingResult<Vec<u8>> {
    let host = HostCtx::of(call)?;
    let (bucket, key) = (store.bucket.clone(), key.to_owned());
    host.block_on(
        async move { bucket.get_bytes(&key).await },
        call.call_position(),
    )?
    .map(|bytes| bytes.to_vec())
    .map_err(|error| script_error(error, call.call_position()))
}

/// Object storage: open stores by URL, read and write objects, clone and verify buckets.
#[export_module]
pub mod store_api {
    use rhai::{Blob, Map, NativeCallContext};

    use super::{Listing, ObjectInfo, Store, SyncResult, VerifyResult};
    use crate::host::context::HostCtx;
    use crate::host::error::{BindingResult, script_error, script_fail};
    use crate::host::plan::PlanEntry;
    use crate::kind::Kind;

    /// Opens a store by URL: `s3://bucket/prefix`, `gs://`, `az://`, `wasb://`, `as://`,
    /// `file:///dir`, `memory://name`. S3 credentials, region and endpoint come from the
    /// environment as the AWS tools read them (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`).
    ///
    /// ```rhai
    /// let bucket = store::open("s3://pachyderm-data/pach");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn open(call: NativeCallContext, url: &str) -> BindingResult<Store> {
        let host = HostCtx::of(&call)?;
        super::open_store(&host, url, Default::default(), call.call_position())
    }

    /// Opens a store with options: `endpoint`, `region`, `access_key_id`,
    /// `secret_access_key`, `session_token`, `path_style`, `virtual_hosted_style`,
    /// `allow_http`, `anonymous`, `imds` (accepted, no effect), `create` (file://), or any
    /// `aws_*` key. For s3/gs/az, `request_timeout` (seconds, default 120) is how long a
    /// request may wait for its response, or for more of the response body, before it is
    /// abandoned and retried.
    /// For s3, `list_page` is how many keys each list request asks for: 1000 of AWS (its
    /// maximum), 10000 of other endpoints, which answer in fewer requests when they allow
    /// more; one that refuses the size is asked for 1,000 instead. `storage_class`,
    /// `server_side_encryption` (`AES256`, `aws:kms`, `aws:kms:dsse`, `sse-c`),
    /// `sse_kms_key_id`, `sse_bucket_key_enabled`, `sse_customer_key_base64` and
    /// `checksum_algorithm` (`sha256`) apply to every write, server-side copies included.
    /// Without keys in the environment or the options, credentials come from the AWS default
    /// chain (`AWS_PROFILE`, `~/.aws/config` and `~/.aws/credentials` with
    /// `credential_process`, SSO and `role_arn`, web identity, containers, instance metadata).
    ///
    /// ```rhai
    /// let s = store::open("s3://backups", #{ endpoint: "http://127.0.0.1:9000", region: "us-east-1" });
    /// ```
    #[rhai_fn(name = "open", return_raw, volatile)]
    pub fn open_with(call: NativeCallContext, url: &str, options: Map) -> BindingResult<Store> {
        let host = HostCtx::of(&call)?;
        let options = super::store_options(&options, call.call_position())?;
        super::open_store(&host, url, options, call.call_position())
    }

    /// The store's URL (never with credentials).
    ///
    /// ```rhai
    /// print(bucket.url());
    /// ```
    #[rhai_fn(global, name = "url")]
    pub fn url(store: &mut Store) -> String {
        store.bucket.url().to_string()
    }

    /// Lists every object, lazily (page by page) when iterated with `for`.
    ///
    /// ```rhai
    /// for obj in bucket.list() { print(`${obj.key} ${obj.size}`); }
    /// ```
    #[rhai_fn(global, name = "list")]
    pub fn list_all(store: &mut Store) -> Listing {
        Listing {
            bucket: store.bucket.clone(),
            prefix: String::new(),
        }
    }

    /// Lists objects whose key starts with `prefix`, lazily.
    ///
    /// ```rhai
    /// let n = 0; for obj in bucket.list("block/") { n += 1; }
    /// ```
    #[rhai_fn(global, name = "list")]
    pub fn list_prefix(store: &mut Store, prefix: &str) -> Listing {
        Listing {
            bucket: store.bucket.clone(),
            prefix: prefix.to_owned(),
        }
    }

    /// Metadata of one object (`key`, `size`, `etag`, `last_modified`); fails with kind
    /// `not_found` if it does not exist.
    ///
    /// ```rhai
    /// let info = bucket.head("tag/master"); print(info.size);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn head(
        call: NativeCallContext,
        store: &mut Store,
        key: &str,
    ) -> BindingResult<ObjectInfo> {
        let host = HostCtx::of(&call)?;
        let (bucket, key) = (store.bucket.clone(), key.to_owned());
        host.block_on(async move { bucket.head(&key).await }, call.call_position())?
            .map(ObjectInfo)
            .map_err(|error| script_error(error, call.call_position()))
    }

    /// Whether an object exists.
    ///
    /// ```rhai
    /// if bucket.exists("object/abc") { print("present"); }
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn exists(call: NativeCallContext, store: &mut Store, key: &str) -> BindingResult<bool> {
        let host = HostCtx::of(&call)?;
        let (bucket, key) = (store.bucket.clone(), key.to_owned());
        host.block_on(
            async move { bucket.exists(&key).await },
            call.call_position(),
        )?
        .map_err(|error| script_error(error, call.call_position()))
    }

    /// An object's content as UTF-8 text.
    ///
    /// ```rhai
    /// let text = bucket.get_text("notes/readme.txt");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn get_text(
        call: NativeCallContext,
        store: &mut Store,
        key: &str,
    ) -> BindingResult<String> {
        let bytes = super::get_bytes(&call, store, key)?;
        String::from_utf8(bytes).map_err(|error| {
            script_fail(
                Kind::Invalid,
                format!(
                    "{} is not UTF-8 text (invalid byte at offset {})",
                    store.bucket.url().join(key),
                    error.utf8_error().valid_up_to()
                ),
                call.call_position(),
            )
        })
    }

    /// An object's content as a blob.
    ///
    /// ```rhai
    /// let data = bucket.get_bytes("block/0a1b"); print(data.len());
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn get_bytes(call: NativeCallContext, store: &mut Store, key: &str) -> BindingResult<Blob> {
        super::get_bytes(&call, store, key)
    }

    /// Writes text to an object (one request, atomic); recorded in the plan on a dry run.
    ///
    /// ```rhai
    /// bucket.put_text("notes/readme.txt", "hello");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn put_text(
        call: NativeCallContext,
        store: &mut Store,
        key: &str,
        text: &str,
    ) -> BindingResult<()> {
        super::put(
            &call,
            store,
            key,
            bytes::Bytes::copy_from_slice(text.as_bytes()),
        )
    }

    /// Writes a blob to an object (one request, atomic); recorded in the plan on a dry run.
    ///
    /// ```rhai
    /// bucket.put_bytes("data/zeros", blob(16, 0));
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn put_bytes(
        call: NativeCallContext,
        store: &mut Store,
        key: &str,
        data: Blob,
    ) -> BindingResult<()> {
        super::put(&call, store, key, bytes::Bytes::from(data))
    }

    /// Copies an object inside the store; recorded in the plan on a dry run.
    ///
    /// ```rhai
    /// bucket.copy("tag/master", "tag/master.bak");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn copy(
        call: NativeCallContext,
        store: &mut Store,
        from: &str,
        to: &str,
    ) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let entry = PlanEntry::new("store", "copy", store.bucket.url().join(to))
            .with_details(serde_json::json!({ "from": store.bucket.url().join(from) }));
        if !host.may_change(entry) {
            return Ok(());
        }
        let (bucket, from, to) = (store.bucket.clone(), from.to_owned(), to.to_owned());
        host.block_on(async move { bucket.copy(&from, &to).await }, position)?
            .map_err(|error| script_error(error, position))
    }

    /// Renames an object inside the store; recorded in the plan on a dry run.
    ///
    /// ```rhai
    /// bucket.rename("tmp/upload", "final/upload");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn rename(
        call: NativeCallContext,
        store: &mut Store,
        from: &str,
        to: &str,
    ) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        let entry = PlanEntry::new("store", "rename", store.bucket.url().join(to))
            .with_details(serde_json::json!({ "from": store.bucket.url().join(from) }));
        if !host.may_change(entry) {
            return Ok(());
        }
        let (bucket, from, to) = (store.bucket.clone(), from.to_owned(), to.to_owned());
        host.block_on(async move { bucket.rename(&from, &to).await }, position)?
            .map_err(|error| script_error(error, position))
    }

    /// Deletes an object (deleting a missing one succeeds); recorded in the plan on a dry
    /// run.
    ///
    /// ```rhai
    /// bucket.delete("tmp/upload");
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn delete(call: NativeCallContext, store: &mut Store, key: &str) -> BindingResult<()> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        store
            .bucket
            .path(key)
            .map_err(|error| script_error(error, position))?;
        if !host.may_change(PlanEntry::new(
            "store",
            "delete",
            store.bucket.url().join(key),
        )) {
            return Ok(());
        }
        let (bucket, key) = (store.bucket.clone(), key.to_owned());
        host.block_on(async move { bucket.delete(&key).await }, position)?
            .map_err(|error| script_error(error, position))
    }

    /// Clones this store into the store at `dst` with default options: copies what is
    /// missing or different (server-side on one S3 endpoint), in parallel, with retries.
    ///
    /// ```rhai
    /// let report = store::open("s3://old-bucket").sync_to("s3://new-bucket");
    /// ```
    #[rhai_fn(global, name = "sync_to", return_raw)]
    pub fn sync_to_url(
        call: NativeCallContext,
        store: &mut Store,
        dst: &str,
    ) -> BindingResult<SyncResult> {
        sync_to_url_with(call, store, dst, Map::new())
    }

    /// Clones this store into `dst` with options: `transfers` (objects at once, default 64),
    /// `checkers` (folders listed at once, default 8), `delete` (mirror deletions, never after
    /// failures), `max_delete`, `checksum` (compare content hashes), `retries`,
    /// `server_side`, `multipart_threshold`, `part_size`, `copy_cutoff`, `copy_part_size`,
    /// `memory_limit`, `dst_options` (options to open `dst` with). Returns a report:
    /// `copied`, `server_side`, `skipped`, `failed`, `deleted`, `bytes`, `host_bytes` (object
    /// data that passed through this host; 0 when every copy was server-side), `retries`
    /// (transient failures retried: throttling, 5xx, dropped connections and timeouts of
    /// single requests, plus whole-object re-attempts; one fault may count at both levels),
    /// `seconds`, `failures`.
    ///
    /// ```rhai
    /// let r = src.sync_to("s3://new-bucket", #{ delete: true, max_delete: 100 });
    /// if r.failed > 0 { throw r.to_string(); }
    /// ```
    #[rhai_fn(global, name = "sync_to", return_raw)]
    pub fn sync_to_url_with(
        call: NativeCallContext,
        store: &mut Store,
        dst: &str,
        options: Map,
    ) -> BindingResult<SyncResult> {
        let host = HostCtx::of(&call)?;
        let destination = super::open_destination(
            &host,
            store,
            dst,
            super::dst_options(&options, call.call_position())?,
            call.call_position(),
        )?;
        super::run_sync(&call, store, destination, &options)
    }

    /// Clones this store into another opened store.
    ///
    /// ```rhai
    /// let report = src.sync_to(store::open("file:///backups/bucket"), #{});
    /// ```
    #[rhai_fn(global, name = "sync_to", return_raw)]
    pub fn sync_to_store(
        call: NativeCallContext,
        store: &mut Store,
        dst: Store,
        options: Map,
    ) -> BindingResult<SyncResult> {
        let destination = super::Destination {
            bucket: dst.bucket,
            missing: None,
        };
        super::run_sync(&call, store, destination, &options)
    }

    /// Compares this store with its clone at `dst`: `missing`, `different`, `extra`, and with
    /// `references: ["block/<id>", "object/<hash>", "tag/<name>"]` (or `backup: PATH`) checks
    /// that every stored thing a backup needs exists in `dst`. `checksum: true` compares
    /// content.
    ///
    /// ```rhai
    /// let v = src.verify_clone("s3://new-bucket", #{ references: ["tag/master"] });
    /// if !v.ok { throw v.to_string(); }
    /// ```
    #[rhai_fn(global, name = "verify_clone", return_raw)]
    pub fn verify_clone_url(
        call: NativeCallContext,
        store: &mut Store,
        dst: &str,
        options: Map,
    ) -> BindingResult<VerifyResult> {
        let position = call.call_position();
        let host = HostCtx::of(&call)?;
        let destination = super::open_destination(
            &host,
            store,
            dst,
            super::dst_options(&options, position)?,
            position,
        )?;
        super::run_verify(&call, store, destination, &options)
    }

    /// Compares this store with another opened store; see `verify_clone(dst_url, options)`.
    ///
    /// ```rhai
    /// let v = src.verify_clone(store::open("file:///backups/bucket"), #{ checksum: true });
    /// ```
    #[rhai_fn(global, name = "verify_clone", return_raw)]
    pub fn verify_clone_store(
        call: NativeCallContext,
        store: &mut Store,
        dst: Store,
        options: Map,
    ) -> BindingResult<VerifyResult> {
        let destination = super::Destination {
            bucket: dst.bucket,
            missing: None,
        };
        super::run_verify(&call, store, destination, &options)
    }

    /// `store::verify_clone(src_url, dst_url, options)`: the function form of
    /// `verify_clone`.
    ///
    /// ```rhai
    /// let v = store::verify_clone("s3://old", "s3://new", #{});
    /// ```
    #[rhai_fn(name = "verify_clone", return_raw)]
    pub fn verify_clone_urls(
        call: NativeCallContext,
        src: &str,
        dst: &str,
        options: Map,
    ) -> BindingResult<VerifyResult> {
        let position = call.call_position();
        let host = HostCtx::of(&call)?;
        let source = super::open_store(&host, src, Default::default(), position)?;
        let destination = super::open_destination(
            &host,
            &source,
            dst,
            super::dst_options(&options, position)?,
            position,
        )?;
        super::run_verify(&call, &source, destination, &options)
    }
}
