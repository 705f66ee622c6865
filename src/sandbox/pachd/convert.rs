//! Dump records of any version (`Op1_7` … `Op1_13`) to and from the current types, as pachd's
//! `convert1_x.go` steps do on restore (reference §5.5).
//!
//! Block and object data ops have the same wire layout in every version and are re-typed
//! directly. The other ops are transcoded field by field **by name** through the descriptor
//! pool (names are stable across versions), with three renames/reshapes: 1.7's `Input.atom`
//! becomes `Input.pfs`, 1.7's integer `ResourceSpec.gpu` becomes
//! `GPUSpec{type: "nvidia.com/gpu", number}`, and fields whose type changed are dropped.
//! Then each version step clears what pachd drops on that step ([`apply_drops`]):
//!
//! | step | dropped |
//! |---|---|
//! | 1.7 → 1.8 | commit provenance; pipeline `salt` (pachd clears it so pipelines reprocess). The 1.7 hashtree is *not* rebuilt: the commit keeps its old tree object |
//! | 1.8 → 1.9 | commit: everything but parent, branch, tree, ID; pipeline: spout, pod_patch |
//! | 1.9 → 1.10 | pipeline: tf_job, `join` inputs (Service.annotations has no 1.10 field) |
//! | 1.10 → 1.11 | commit: started, finished; pipeline: s3_out, sidecar_resource_limits, PFSInput.s3, `join` inputs |
//! | 1.11 → 1.12, 1.12 → 1.13 | as 1.10 → 1.11, plus commit origin; Transform.build; PFSInput trigger, group_by, outer_join; `group` inputs; branch trigger; auth config `id_providers`; activate_auth becomes empty; activate_enterprise keeps only the code |
//!
//! Extract of an older impersonated version goes the other way ([`from_current`]): the current
//! op is transcoded by name into that version's frozen types, which simply lack newer fields.

use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};

use super::error::PachdError;
use crate::proto::{admin, pps};

/// The op kinds of `Op1_x`, by field name, in `kinds` order.
pub const OP_KINDS: [&str; 16] = [
    "object",
    "tag",
    "repo",
    "commit",
    "branch",
    "pipeline",
    "job",
    "create_object",
    "block",
    "set_acl",
    "set_cluster_role_binding",
    "set_auth_config",
    "activate_auth",
    "restore_auth_token",
    "activate_enterprise",
    "check_auth_token",
];

/// The minor version of an op (the first `op1_x` field set, as pachd classifies), if any.
pub fn op_version(op: &admin::Op) -> Option<u32> {
    if op.op1_7.is_some() {
        Some(7)
    } else if op.op1_8.is_some() {
        Some(8)
    } else if op.op1_9.is_some() {
        Some(9)
    } else if op.op1_10.is_some() {
        Some(10)
    } else if op.op1_11.is_some() {
        Some(11)
    } else if op.op1_12.is_some() {
        Some(12)
    } else if op.op1_13.is_some() {
        Some(13)
    } else {
        None
    }
}

/// The name of the kind set in a current op (`"block"`, `"repo"`, …), or `""` when empty.
pub fn op_kind(op: &admin::Op113) -> &'static str {
    if op.object.is_some() {
        "object"
    } else if op.tag.is_some() {
        "tag"
    } else if op.repo.is_some() {
        "repo"
    } else if op.commit.is_some() {
        "commit"
    } else if op.branch.is_some() {
        "branch"
    } else if op.pipeline.is_some() {
        "pipeline"
    } else if op.job.is_some() {
        "job"
    } else if op.create_object.is_some() {
        "create_object"
    } else if op.block.is_some() {
        "block"
    } else if op.set_acl.is_some() {
        "set_acl"
    } else if op.set_cluster_role_binding.is_some() {
        "set_cluster_role_binding"
    } else if op.set_auth_config.is_some() {
        "set_auth_config"
    } else if op.activate_auth.is_some() {
        "activate_auth"
    } else if op.restore_auth_token.is_some() {
        "restore_auth_token"
    } else if op.activate_enterprise.is_some() {
        "activate_enterprise"
    } else if op.check_auth_token.is_some() {
        "check_auth_token"
    } else {
        ""
    }
}

fn rewire<A: Message, B: Message + Default>(from: &A) -> Result<B, PachdError> {
    B::decode(from.encode_to_vec().as_slice())
        .map_err(|err| PachdError::invalid(format!("malformed op: {err}")))
}

fn descriptor(name: &str) -> MessageDescriptor {
    crate::proto::pool()
        .get_message_by_name(name)
        .expect("every admin.Op1_x message is in the descriptor pool")
}

/// Transcodes `bytes` of message `from` into message `to` by field name.
fn transcode_bytes(bytes: &[u8], from: &str, to: &str) -> Result<Vec<u8>, PachdError> {
    let source = DynamicMessage::decode(descriptor(from), bytes)
        .map_err(|err| PachdError::invalid(format!("malformed op: {err}")))?;
    Ok(transcode_message(&source, &descriptor(to)).encode_to_vec())
}

fn transcode_message(source: &DynamicMessage, target: &MessageDescriptor) -> DynamicMessage {
    let mut out = DynamicMessage::new(target.clone());
    for (field, value) in source.fields() {
        let name = field.name();
        let dest = target.get_field_by_name(name).or_else(|| {
            (name == "atom")
                .then(|| target.get_field_by_name("pfs"))
                .flatten()
        });
        let Some(dest) = dest else { continue };
        if out.has_field(&dest) {
            continue;
        }
        let converted = match value {
            Value::List(items) if dest.is_list() => Some(Value::List(
                items
                    .iter()
                    .filter_map(|item| convert_single(item, &dest.kind()))
                    .collect(),
            )),
            Value::Map(entries) if dest.is_map() => {
                let Kind::Message(entry) = dest.kind() else {
                    continue;
                };
                let value_kind = entry.map_entry_value_field().kind();
                Some(Value::Map(
                    entries
                        .iter()
                        .filter_map(|(k, v)| convert_single(v, &value_kind).map(|v| (k.clone(), v)))
                        .collect(),
                ))
            }
            Value::List(_) | Value::Map(_) => None,
            single if !dest.is_list() && !dest.is_map() => convert_single(single, &dest.kind()),
            _ => None,
        };
        if let Some(converted) = converted {
            out.set_field(&dest, converted);
        }
    }
    out
}

fn convert_single(value: &Value, kind: &Kind) -> Option<Value> {
    match (value, kind) {
        (Value::Message(message), Kind::Message(target)) => {
            Some(Value::Message(transcode_message(message, target)))
        }
        (Value::EnumNumber(number), Kind::Enum(_)) => Some(Value::EnumNumber(*number)),
        (Value::I64(number), Kind::Message(target)) if target.full_name() == "pps.GPUSpec" => {
            let mut gpu = DynamicMessage::new(target.clone());
            gpu.set_field_by_name("type", Value::String("nvidia.com/gpu".to_owned()));
            gpu.set_field_by_name("number", Value::I64(*number));
            Some(Value::Message(gpu))
        }
        (value, kind) if value.is_valid(kind) => Some(value.clone()),
        _ => None,
    }
}

macro_rules! old_to_current {
    ($version:expr, $inner:expr, $name:literal, [$($data:ident),*]) => {{
        let mut inner = $inner;
        $(
            if let Some(data) = inner.$data.take() {
                return Ok(($version, admin::Op113 { $data: Some(rewire(&data)?), ..Default::default() }));
            }
        )*
        let bytes = transcode_bytes(&inner.encode_to_vec(), $name, "admin.Op1_13")?;
        admin::Op113::decode(bytes.as_slice())
            .map_err(|err| PachdError::invalid(format!("malformed op: {err}")))?
    }};
}

/// Converts an op of any version into the current types (no drops yet; see [`apply_drops`]).
/// Returns the op's minor version too.
pub fn to_current(op: admin::Op) -> Result<(u32, admin::Op113), PachdError> {
    let version =
        op_version(&op).ok_or_else(|| PachdError::unknown("unrecognized stream version"))?;
    let current = match version {
        7 => old_to_current!(
            version,
            op.op1_7.expect("classified"),
            "admin.Op1_7",
            [object, tag]
        ),
        8 => old_to_current!(
            version,
            op.op1_8.expect("classified"),
            "admin.Op1_8",
            [object, tag]
        ),
        9 => old_to_current!(
            version,
            op.op1_9.expect("classified"),
            "admin.Op1_9",
            [object, tag, create_object, block]
        ),
        10 => old_to_current!(
            version,
            op.op1_10.expect("classified"),
            "admin.Op1_10",
            [object, tag, create_object, block]
        ),
        11 => old_to_current!(
            version,
            op.op1_11.expect("classified"),
            "admin.Op1_11",
            [object, tag, create_object, block]
        ),
        12 => old_to_current!(
            version,
            op.op1_12.expect("classified"),
            "admin.Op1_12",
            [object, tag, create_object, block]
        ),
        _ => op.op1_13.expect("classified"),
    };
    Ok((version, current))
}

fn drop_inputs(input: &mut pps::Input, join: bool, group: bool, s3: bool, v112: bool) {
    if join {
        input.join.clear();
    }
    if group {
        input.group.clear();
    }
    if let Some(pfs) = input.pfs.as_mut() {
        if s3 {
            pfs.s3 = false;
        }
        if v112 {
            pfs.trigger = None;
            pfs.group_by.clear();
            pfs.outer_join = false;
        }
    }
    for child in input
        .cross
        .iter_mut()
        .chain(input.union.iter_mut())
        .chain(input.join.iter_mut())
        .chain(input.group.iter_mut())
    {
        drop_inputs(child, join, group, s3, v112);
    }
}

/// Clears what pachd drops converting an op from version `from` up to `to` (§5.5).
pub fn apply_drops(op: &mut admin::Op113, from: u32, to: u32) {
    for step in from..to {
        if let Some(commit) = op.commit.as_mut() {
            match step {
                7 => commit.provenance.clear(),
                8 => {
                    *commit = pps_free_commit(commit);
                }
                10 => {
                    commit.started = None;
                    commit.finished = None;
                }
                11 | 12 => {
                    commit.started = None;
                    commit.finished = None;
                    commit.origin = None;
                }
                _ => {}
            }
        }
        if let Some(pipeline) = op.pipeline.as_mut() {
            match step {
                7 => pipeline.salt.clear(),
                8 => {
                    pipeline.spout = None;
                    pipeline.pod_patch.clear();
                }
                9 => {
                    pipeline.tf_job = None;
                    if let Some(input) = pipeline.input.as_mut() {
                        drop_inputs(input, true, false, false, false);
                    }
                }
                10..=12 => {
                    pipeline.s3_out = false;
                    pipeline.sidecar_resource_limits = None;
                    if let Some(input) = pipeline.input.as_mut() {
                        drop_inputs(input, true, step >= 11, true, step >= 11);
                    }
                    if step >= 11
                        && let Some(transform) = pipeline.transform.as_mut()
                    {
                        transform.build = None;
                    }
                }
                _ => {}
            }
        }
        if step >= 11 {
            if let Some(branch) = op.branch.as_mut() {
                branch.trigger = None;
            }
            if let Some(config) = op
                .set_auth_config
                .as_mut()
                .and_then(|c| c.configuration.as_mut())
            {
                config.id_providers.clear();
            }
            if let Some(activate) = op.activate_auth.as_mut() {
                *activate = Default::default();
            }
            if let Some(enterprise) = op.activate_enterprise.as_mut() {
                enterprise.expires = None;
            }
        }
    }
}

fn pps_free_commit(
    commit: &crate::proto::pfs::BuildCommitRequest,
) -> crate::proto::pfs::BuildCommitRequest {
    crate::proto::pfs::BuildCommitRequest {
        parent: commit.parent.clone(),
        branch: commit.branch.clone(),
        tree: commit.tree.clone(),
        id: commit.id.clone(),
        ..Default::default()
    }
}

macro_rules! current_to_old {
    ($op:expr, $field:ident, $ty:ident, $name:literal, [$($data:ident),*]) => {{
        let mut op = $op;
        $(
            if let Some(data) = op.$data.take() {
                return Ok(admin::Op {
                    $field: Some(admin::$ty { $data: Some(rewire(&data)?), ..Default::default() }),
                    ..Default::default()
                });
            }
        )*
        let bytes = transcode_bytes(&op.encode_to_vec(), "admin.Op1_13", $name)?;
        let inner = admin::$ty::decode(bytes.as_slice())
            .map_err(|err| PachdError::invalid(format!("malformed op: {err}")))?;
        admin::Op { $field: Some(inner), ..Default::default() }
    }};
}

/// Wraps a current op into the `Op1_x` field of version `minor` (what Extract writes).
pub fn from_current(op: admin::Op113, minor: u32) -> Result<admin::Op, PachdError> {
    Ok(match minor {
        9 => current_to_old!(
            op,
            op1_9,
            Op19,
            "admin.Op1_9",
            [object, tag, create_object, block]
        ),
        10 => current_to_old!(
            op,
            op1_10,
            Op110,
            "admin.Op1_10",
            [object, tag, create_object, block]
        ),
        11 => current_to_old!(
            op,
            op1_11,
            Op111,
            "admin.Op1_11",
            [object, tag, create_object, block]
        ),
        12 => current_to_old!(
            op,
            op1_12,
            Op112,
            "admin.Op1_12",
            [object, tag, create_object, block]
        ),
        _ => admin::Op {
            op1_13: Some(op),
            ..Default::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{pfs, pfs_1_7, pfs_1_11, pps_1_7};

    #[test]
    fn converts_1_7_pipelines_forward() {
        let pipeline = pps_1_7::CreatePipelineRequest {
            pipeline: Some(pps_1_7::Pipeline { name: "p".into() }),
            input: Some(pps_1_7::Input {
                atom: Some(pps_1_7::AtomInput {
                    name: "in".into(),
                    repo: "in".into(),
                    glob: "/*".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resource_requests: Some(pps_1_7::ResourceSpec {
                gpu: 2,
                ..Default::default()
            }),
            salt: "s".into(),
            ..Default::default()
        };
        let op = admin::Op {
            op1_7: Some(admin::Op17 {
                pipeline: Some(pipeline),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (version, mut current) = to_current(op).unwrap();
        assert_eq!(version, 7);
        apply_drops(&mut current, 7, 13);
        let pipeline = current.pipeline.unwrap();
        assert_eq!(pipeline.input.unwrap().pfs.unwrap().repo, "in");
        assert_eq!(pipeline.resource_requests.unwrap().gpu.unwrap().number, 2);
        assert!(pipeline.salt.is_empty());
    }

    #[test]
    fn round_trips_1_11_commits_and_blocks() {
        let op = admin::Op {
            op1_11: Some(admin::Op111 {
                commit: Some(pfs_1_11::BuildCommitRequest {
                    parent: Some(pfs_1_11::Commit {
                        repo: Some(pfs_1_11::Repo { name: "r".into() }),
                        id: String::new(),
                    }),
                    id: "c".into(),
                    size_bytes: 5,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (_, current) = to_current(op).unwrap();
        assert_eq!(current.commit.as_ref().unwrap().id, "c");
        let back = from_current(current, 11).unwrap();
        assert_eq!(back.op1_11.unwrap().commit.unwrap().size_bytes, 5);
        let block = admin::Op113 {
            block: Some(pfs::PutBlockRequest {
                block: Some(pfs::Block { hash: "b".into() }),
                value: b"xyz".to_vec(),
            }),
            ..Default::default()
        };
        let old = from_current(block, 9).unwrap();
        assert_eq!(old.op1_9.unwrap().block.unwrap().value, b"xyz");
        let _ = pfs_1_7::Tag::default();
    }
}
