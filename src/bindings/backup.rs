//! The `backup` package: open a dump (file, `-`, URL), read its inventory, verify it, iterate
//! its ops, and filter or rewrite it into a new dump.

use rhai::plugin::*;
use rhai::{Dynamic, EvalAltResult, FnPtr};

use crate::backup::{BackupError, Location, Op};

/// A step applied to each op when a dump is rewritten.
#[derive(Clone)]
pub enum Transform {
    /// Keep the op when the closure returns true.
    Filter(FnPtr),
    /// Replace the op with the closure's result (an op, or a map of its request fields).
    Map(FnPtr),
    /// Drop ops of these kinds.
    DropKinds(Vec<String>),
}

/// A dump opened by a script, with the transforms to apply when it is written.
#[derive(Clone)]
pub struct Backup {
    /// Where it is read from.
    pub location: Location,
    /// Transforms, in order.
    pub transforms: Vec<Transform>,
}

/// An op as scripts see it.
#[derive(Clone)]
pub struct ScriptOp(pub Op);

/// Iterates a dump's ops for `for op in backup`.
pub struct OpIter {
    reader: Option<crate::backup::reader::RecordReader>,
    failed: Option<BackupError>,
}

impl Iterator for OpIter {
    type Item = Result<ScriptOp, Box<EvalAltResult>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.failed.take() {
            return Some(Err(crate::host::error::script_error(
                error,
                rhai::Position::NONE,
            )));
        }
        let reader = self.reader.as_mut()?;
        match reader.next_record() {
            Ok(None) => None,
            Ok(Some(record)) => Some(
                Op::from_record(record)
                    .map(ScriptOp)
                    .map_err(|error| crate::host::error::script_error(error, rhai::Position::NONE)),
            ),
            Err(error) => {
                self.reader = None;
                Some(Err(crate::host::error::script_error(
                    error,
                    rhai::Position::NONE,
                )))
            }
        }
    }
}

impl IntoIterator for Backup {
    type Item = Result<ScriptOp, Box<EvalAltResult>>;
    type IntoIter = OpIter;

    fn into_iter(self) -> OpIter {
        match self
            .location
            .open()
            .and_then(crate::backup::reader::RecordReader::new)
        {
            Ok(reader) => OpIter {
                reader: Some(reader),
                failed: None,
            },
            Err(error) => OpIter {
                reader: None,
                failed: Some(error),
            },
        }
    }
}

/// Registers the types and their iterator.
pub fn register_types(engine: &mut rhai::Engine) {
    engine.register_type_with_name::<Backup>("Backup");
    engine.register_type_with_name::<ScriptOp>("Op");
    engine.register_iterator_result::<Backup, ScriptOp>();
}

/// `backup::` functions and the methods of `Backup` and `Op` values.
#[export_module]
pub mod backup_api {
    use rhai::{Array, Dynamic, FnPtr, Map, NativeCallContext};

    use super::{Backup, ScriptOp, Transform};
    use crate::backup::Location;
    use crate::backup::edit::{apply_json, request_json};
    use crate::backup::manifest::SourceInfo;
    use crate::backup::sink::{DumpSink, DumpUpload};
    use crate::host::context::HostCtx;
    use crate::host::convert::{from_json, to_json};
    use crate::host::error::{BindingResult, script_error, script_fail};
    use crate::host::plan::PlanEntry;
    use crate::kind::Kind;

    /// Opens a dump: a path, `-` (stdin) or an object-store URL. Nothing is read until it is
    /// used. A path (or `file://` URL) must lie inside the allowed directories, as for
    /// `fs::`.
    ///
    /// ```rhai
    /// let b = backup::open("prod.dump");
    /// ```
    #[rhai_fn(return_raw, volatile)]
    pub fn open(call: NativeCallContext, source: &str) -> BindingResult<Backup> {
        let host = HostCtx::of(&call)?;
        crate::bindings::local_target(&host, source, call.call_position())?;
        Ok(Backup {
            location: Location::parse(source),
            transforms: Vec::new(),
        })
    }

    /// What the dump holds (the `ankus backup inspect` JSON) as a map.
    ///
    /// ```rhai
    /// let s = backup::open("prod.dump").summary();
    /// print(`${s.records} records, ${s.repos.len()} repos`);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn summary(call: NativeCallContext, backup: &mut Backup) -> BindingResult<Dynamic> {
        let inventory = crate::backup::inventory::inspect(&backup.location)
            .map_err(|error| script_error(error, call.call_position()))?;
        Ok(from_json(
            &serde_json::to_value(&inventory).unwrap_or_default(),
        ))
    }

    /// Decodes every record and checks framing, checksums, relations and the manifest;
    /// fails naming the record and offset of the first problem.
    ///
    /// ```rhai
    /// let report = backup::open("prod.dump").verify();
    /// print(report.sha256);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn verify(call: NativeCallContext, backup: &mut Backup) -> BindingResult<Dynamic> {
        let report = crate::backup::verify::verify(&backup.location)
            .map_err(|error| script_error(error, call.call_position()))?;
        Ok(from_json(
            &serde_json::to_value(&report).unwrap_or_default(),
        ))
    }

    /// A copy that keeps only the ops for which `keep(op)` returns true when written.
    ///
    /// ```rhai
    /// let b = backup::open("prod.dump").filter(|op| op.kind != "job");
    /// ```
    #[rhai_fn(global, pure)]
    pub fn filter(backup: &mut Backup, keep: FnPtr) -> Backup {
        let mut copy = backup.clone();
        copy.transforms.push(Transform::Filter(keep));
        copy
    }

    /// A copy whose ops are replaced by `change(op)` when written: return the op unchanged, a
    /// map of its request fields (as `op.to_map()` gives them) to edit it, or `()` to drop it.
    ///
    /// ```rhai
    /// let b = backup::open("prod.dump").map(|op| {
    ///     if op.kind != "pipeline" { return op; }
    ///     let m = op.to_map();
    ///     m.transform.image = "registry.local/" + m.transform.image;
    ///     m
    /// });
    /// ```
    #[rhai_fn(global, pure)]
    pub fn map(backup: &mut Backup, change: FnPtr) -> Backup {
        let mut copy = backup.clone();
        copy.transforms.push(Transform::Map(change));
        copy
    }

    /// A copy without ops of the given kinds (`"job"`, `"set_acl"`, ...).
    ///
    /// ```rhai
    /// let b = backup::open("prod.dump").drop_kinds(["job"]);
    /// ```
    #[rhai_fn(global, pure, return_raw)]
    pub fn drop_kinds(
        call: NativeCallContext,
        backup: &mut Backup,
        kinds: Array,
    ) -> BindingResult<Backup> {
        let mut names = Vec::new();
        for kind in kinds {
            let name = kind.to_string();
            if crate::backup::wire::OpKind::parse(&name).is_none() {
                return Err(script_fail(
                    Kind::Invalid,
                    format!("unknown op kind '{name}'"),
                    call.call_position(),
                ));
            }
            names.push(name);
        }
        let mut copy = backup.clone();
        copy.transforms.push(Transform::DropKinds(names));
        Ok(copy)
    }

    /// Writes the dump, with its filters and rewrites applied, to a new file atomically, with
    /// a manifest beside it; returns the summary. Recorded in the plan on a dry run.
    ///
    /// ```rhai
    /// let s = backup::open("prod.dump").drop_kinds(["job"]).write("slim.dump");
    /// print(s.inventory.records);
    /// ```
    #[rhai_fn(global, return_raw)]
    pub fn write(
        call: NativeCallContext,
        backup: &mut Backup,
        destination: &str,
    ) -> BindingResult<Dynamic> {
        let host = HostCtx::of(&call)?;
        let position = call.call_position();
        crate::bindings::local_target(&host, destination, position)?;
        let target = Location::parse(destination);
        let entry =
            PlanEntry::new("backup", "write", target.display()).with_details(serde_json::json!({
                "from": backup.location.display(),
                "transforms": backup.transforms.len(),
            }));
        if !host.may_change(entry) {
            return Ok(Dynamic::from_map(Map::new()));
        }
        let mut sink = DumpSink::create(
            &target,
            SourceInfo {
                cluster: backup.location.display(),
                ..SourceInfo::default()
            },
        )
        .map_err(|error| script_error(error, position))?;
        // An object-store destination is uploaded as it is written; on any failure the
        // upload is aborted, so no object appears.
        let mut upload =
            DumpUpload::open(&target).map_err(|error| script_error(error, position))?;
        let written = write_all(&call, &host, backup, &mut sink, &mut upload);
        let completed = written.and_then(|()| {
            let (summary, remainder) = sink
                .finish_with_remainder()
                .map_err(|error| script_error(error, position))?;
            if let (Some(upload), Some(remainder)) = (upload.take(), remainder) {
                host.block_on(upload.complete(&summary, remainder), position)?
                    .map_err(|error| script_error(error, position))?;
            }
            Ok(summary)
        });
        let summary = match completed {
            Ok(summary) => summary,
            Err(error) => {
                if let Some(upload) = upload {
                    let _ = crate::host::runtime::block_on_uncancellable(upload.abort());
                }
                return Err(error);
            }
        };
        Ok(from_json(
            &serde_json::to_value(&summary).unwrap_or_default(),
        ))
    }

    /// The dump's location as given.
    ///
    /// ```rhai
    /// print(backup::open("prod.dump").source);
    /// ```
    #[rhai_fn(global, get = "source", pure)]
    pub fn source(backup: &mut Backup) -> String {
        backup.location.display()
    }

    /// `Backup(prod.dump)`.
    ///
    /// ```rhai
    /// print(backup::open("prod.dump"));
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn backup_to_string(backup: &mut Backup) -> String {
        format!("Backup({})", backup.location.display())
    }

    /// The pachd dump format of the op, e.g. `"1.11"`.
    ///
    /// ```rhai
    /// for op in backup::open("prod.dump") { print(op.version); break; }
    /// ```
    #[rhai_fn(global, get = "version", pure)]
    pub fn version(op: &mut ScriptOp) -> String {
        op.0.version.as_str().to_owned()
    }

    /// The operation, by its `Op1_x` field name: `repo`, `commit`, `branch`, `pipeline`,
    /// `job`, `block`, `create_object`, `tag`, `set_acl`, ...
    ///
    /// ```rhai
    /// for op in backup::open("prod.dump") { if op.kind == "pipeline" { print(op.name); } }
    /// ```
    #[rhai_fn(global, get = "kind", pure)]
    pub fn kind(op: &mut ScriptOp) -> String {
        op.0.kind.as_str().to_owned()
    }

    /// What the op is about: repo or pipeline name, `repo@branch`, commit id, block id,
    /// object hash, ACL repo or principal.
    ///
    /// ```rhai
    /// for op in backup::open("prod.dump") { print(`${op.kind} ${op.name}`); }
    /// ```
    #[rhai_fn(global, get = "name", pure)]
    pub fn name(op: &mut ScriptOp) -> String {
        op.0.name()
    }

    /// The repo an op belongs to (repo, commit, branch and ACL ops; a pipeline's or job's
    /// output repo), or `""`.
    ///
    /// ```rhai
    /// let only_left = backup::open("prod.dump").filter(|op| op.repo == "" || op.repo == "left");
    /// ```
    #[rhai_fn(global, get = "repo", pure)]
    pub fn repo(op: &mut ScriptOp) -> String {
        op.0.repo()
    }

    /// The record number in the dump (0-based).
    ///
    /// ```rhai
    /// for op in backup::open("prod.dump") { print(op.index); break; }
    /// ```
    #[rhai_fn(global, get = "index", pure)]
    pub fn index(op: &mut ScriptOp) -> rhai::INT {
        op.0.index as rhai::INT
    }

    /// The op's request fields as a map (proto field names; bytes as base64).
    ///
    /// ```rhai
    /// for op in backup::open("prod.dump") { if op.kind == "repo" { print(op.to_map().repo.name); } }
    /// ```
    #[rhai_fn(global, pure, return_raw)]
    pub fn to_map(call: NativeCallContext, op: &mut ScriptOp) -> BindingResult<Map> {
        let json =
            request_json(&op.0).map_err(|error| script_error(error, call.call_position()))?;
        Ok(from_json(&json).try_cast::<Map>().unwrap_or_default())
    }

    /// A copy of the op with its request fields replaced by `fields` (in the `to_map()`
    /// shape); fields ankus does not model are kept.
    ///
    /// ```rhai
    /// let edited = op.with(#{ repo: #{ name: "renamed" } });
    /// ```
    #[rhai_fn(global, pure, return_raw)]
    pub fn with(
        call: NativeCallContext,
        op: &mut ScriptOp,
        fields: Map,
    ) -> BindingResult<ScriptOp> {
        let json = to_json(Some(&call), &Dynamic::from_map(fields));
        apply_json(&op.0, &json)
            .map(ScriptOp)
            .map_err(|error| script_error(error, call.call_position()))
    }

    /// `Op(1.11 repo left)`.
    ///
    /// ```rhai
    /// for op in backup::open("prod.dump") { print(op); break; }
    /// ```
    #[rhai_fn(global, name = "to_string", name = "to_debug", pure)]
    pub fn op_to_string(op: &mut ScriptOp) -> String {
        format!(
            "Op({} {} {})",
            op.0.version.as_str(),
            op.0.kind.as_str(),
            op.0.name()
        )
    }
}

/// Reads `backup`'s records through its transforms into `sink`, uploading as it goes.
fn write_all(
    call: &NativeCallContext,
    host: &crate::host::context::HostCtx,
    backup: &Backup,
    sink: &mut crate::backup::sink::DumpSink,
    upload: &mut Option<crate::backup::sink::DumpUpload>,
) -> Result<(), Box<EvalAltResult>> {
    use crate::host::error::script_error;
    let position = call.call_position();
    let mut reader = backup
        .location
        .open()
        .and_then(crate::backup::reader::RecordReader::new)
        .map_err(|error| script_error(error, position))?;
    while let Some(record) = reader
        .next_record()
        .map_err(|error| script_error(error, position))?
    {
        if host.is_cancelled() {
            return Err(Box::new(rhai::EvalAltResult::ErrorTerminated(
                "interrupted".into(),
                position,
            )));
        }
        let op = Op::from_record(record).map_err(|error| script_error(error, position))?;
        if let Some(kept) = apply_transforms(call, &backup.transforms, op)? {
            sink.write_op(&kept.bytes)
                .map_err(|error| script_error(error, position))?;
            if let Some(upload) = upload.as_mut() {
                host.block_on(upload.send(sink), position)?
                    .map_err(|error| script_error(error, position))?;
            }
        }
    }
    Ok(())
}

/// Runs the transforms over one op; `None` when it is dropped.
pub fn apply_transforms(
    call: &NativeCallContext,
    transforms: &[Transform],
    op: Op,
) -> Result<Option<Op>, Box<EvalAltResult>> {
    let mut current = op;
    for transform in transforms {
        match transform {
            Transform::DropKinds(kinds) => {
                if kinds.iter().any(|kind| kind == current.kind.as_str()) {
                    return Ok(None);
                }
            }
            Transform::Filter(keep) => {
                let verdict: Dynamic =
                    keep.call_within_context(call, (ScriptOp(current.clone()),))?;
                if !verdict.as_bool().unwrap_or(false) {
                    return Ok(None);
                }
            }
            Transform::Map(change) => {
                let result: Dynamic =
                    change.call_within_context(call, (ScriptOp(current.clone()),))?;
                if result.is_unit() {
                    return Ok(None);
                }
                if let Some(changed) = result.clone().try_cast::<ScriptOp>() {
                    current = changed.0;
                } else if result.is_map() {
                    let json = crate::host::convert::to_json(Some(call), &result);
                    current =
                        crate::backup::edit::apply_json(&current, &json).map_err(|error| {
                            crate::host::error::script_error(error, call.call_position())
                        })?;
                } else {
                    return Err(crate::host::error::script_fail(
                        crate::kind::Kind::Invalid,
                        format!(
                            "map closure must return an op, a map of request fields or (), not {}",
                            result.type_name()
                        ),
                        call.call_position(),
                    ));
                }
            }
        }
    }
    Ok(Some(current))
}
