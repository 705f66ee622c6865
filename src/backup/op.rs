//! One dump record as a typed value: version, kind and the serialized bytes, decoded on demand
//! through the descriptor pool so every version's fields (and unknown ones) are kept.

use std::borrow::Cow;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, ReflectMessage, Value};

use super::error::{At, BackupError};
use super::reader::Record;
use super::wire::{self, ClassifyError, OpKind, OpVersion};

/// A classified record of a dump.
#[derive(Clone, Debug)]
pub struct Op {
    /// 0-based record number.
    pub index: u64,
    /// Offset of the record in the decompressed stream.
    pub offset: u64,
    /// The dump format.
    pub version: OpVersion,
    /// The operation.
    pub kind: OpKind,
    /// The serialized `admin.Op`, forwarded as is unless edited. Shared, not copied: block
    /// and object ops carry up to 10 MiB of data each.
    pub bytes: Bytes,
}

impl Op {
    /// Classifies a record, naming the record and offset when it is not an op.
    pub fn from_record(record: Record) -> Result<Op, BackupError> {
        let at = At {
            record: record.index,
            offset: record.offset,
            compressed: None,
        };
        let (version, kind) = wire::classify(&record.bytes).map_err(|error| match error {
            ClassifyError::NoVersion => BackupError::NoVersion { at },
            ClassifyError::NotAnOp(reason) => BackupError::NotAnOp { at, reason },
        })?;
        Ok(Op {
            index: record.index,
            offset: record.offset,
            version,
            kind,
            bytes: Bytes::from(record.bytes),
        })
    }

    /// Builds an op from an inner request message (re-serializing it).
    pub fn from_request(
        index: u64,
        version: OpVersion,
        kind: OpKind,
        request: &DynamicMessage,
    ) -> Op {
        Op {
            index,
            offset: 0,
            version,
            kind,
            bytes: wire::wrap(version, kind, &request.encode_to_vec()).into(),
        }
    }

    fn at(&self) -> At {
        At {
            record: self.index,
            offset: self.offset,
            compressed: None,
        }
    }

    /// The serialized inner request (the message inside `Op1_x`), every copy of it merged as
    /// protobuf merges them (see [`wire::inner_request`]).
    pub fn request_bytes(&self) -> Cow<'_, [u8]> {
        wire::inner_request(&self.bytes).unwrap_or_default()
    }

    /// The descriptor of the inner request message for this version and kind.
    pub fn request_descriptor(&self) -> Result<MessageDescriptor, BackupError> {
        request_descriptor(self.version, self.kind).ok_or_else(|| BackupError::NotAnOp {
            at: self.at(),
            reason: format!(
                "Op1_{} has no field {}",
                self.version.minor(),
                self.kind.as_str()
            ),
        })
    }

    /// Decodes the inner request with this version's types (unknown fields are kept). Bytes
    /// fields share the record's buffer instead of copying it.
    pub fn request(&self) -> Result<DynamicMessage, BackupError> {
        let descriptor = self.request_descriptor()?;
        let inner = match self.request_bytes() {
            Cow::Borrowed(slice) => self.bytes.slice_ref(slice),
            Cow::Owned(merged) => Bytes::from(merged),
        };
        DynamicMessage::decode(descriptor.clone(), inner).map_err(|error| BackupError::NotAnOp {
            at: self.at(),
            reason: format!("{} does not decode: {error}", descriptor.full_name()),
        })
    }

    /// A short name for what the op is about: repo or pipeline name, `repo@branch`, commit id,
    /// block id, object hash, tag name, ACL repo, principal.
    pub fn name(&self) -> String {
        let Ok(request) = self.request() else {
            return String::new();
        };
        let text = |path: &[&str]| string_at(&request, path).unwrap_or_default();
        match self.kind {
            OpKind::Repo => text(&["repo", "name"]),
            OpKind::Pipeline => text(&["pipeline", "name"]),
            OpKind::Commit => text(&["ID"]),
            OpKind::Branch => {
                let (repo, branch) = branch_of(&request);
                format!("{repo}@{branch}")
            }
            OpKind::Job => text(&["output_commit", "id"]),
            OpKind::Block => text(&["block", "hash"]),
            OpKind::CreateObject | OpKind::Tag => text(&["object", "hash"]),
            OpKind::SetAcl => text(&["repo"]),
            OpKind::SetClusterRoleBinding => text(&["principal"]),
            OpKind::RestoreAuthToken => text(&["token", "token_info", "subject"]),
            _ => String::new(),
        }
    }
}

impl Op {
    /// The repo an op belongs to: repo, commit, branch and ACL ops name one; pipeline and job
    /// ops belong to the pipeline's output repo; other ops to none (`""`).
    pub fn repo(&self) -> String {
        let Ok(request) = self.request() else {
            return String::new();
        };
        match self.kind {
            OpKind::Repo => string_at(&request, &["repo", "name"]),
            OpKind::Commit => string_at(&request, &["parent", "repo", "name"])
                .or_else(|| string_at(&request, &["branch", "repo", "name"])),
            OpKind::Branch => Some(branch_of(&request).0),
            OpKind::SetAcl => string_at(&request, &["repo"]),
            OpKind::Pipeline | OpKind::Job => string_at(&request, &["pipeline", "name"]),
            _ => None,
        }
        .unwrap_or_default()
    }
}

/// The descriptor of `Op1_x.<kind>`'s message type.
pub fn request_descriptor(version: OpVersion, kind: OpKind) -> Option<MessageDescriptor> {
    let op = crate::proto::pool().get_message_by_name(&version.message_name())?;
    match op.get_field_by_name(kind.as_str())?.kind() {
        prost_reflect::Kind::Message(message) => Some(message),
        _ => None,
    }
}

/// Registers the secrets an op carries for redaction: enterprise activation codes and
/// (hashed) robot tokens. Called wherever an op's content may be shown.
pub fn register_secrets(kind: OpKind, request: &DynamicMessage) {
    let secret = match kind {
        OpKind::ActivateEnterprise => string_at(request, &["activation_code"]),
        OpKind::RestoreAuthToken => string_at(request, &["token", "hashed_token"]),
        _ => None,
    };
    if let Some(secret) = secret {
        crate::redact::register(&secret);
    }
}

/// Follows message fields by name; `None` when a step is unset or not a message.
pub fn value_at(message: &DynamicMessage, path: &[&str]) -> Option<Value> {
    let (first, rest) = path.split_first()?;
    let field = message.descriptor().get_field_by_name(first)?;
    if !message.has_field(&field) {
        return None;
    }
    let value = message.get_field(&field).into_owned();
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        Value::Message(inner) => value_at(&inner, rest),
        _ => None,
    }
}

/// A string field at `path`, if set.
pub fn string_at(message: &DynamicMessage, path: &[&str]) -> Option<String> {
    match value_at(message, path)? {
        Value::String(text) => Some(text),
        _ => None,
    }
}

/// The repeated message field `name` (empty when unset or absent in this version).
pub fn messages_at(message: &DynamicMessage, name: &str) -> Vec<DynamicMessage> {
    let Some(field) = message.descriptor().get_field_by_name(name) else {
        return Vec::new();
    };
    match message.get_field(&field).as_list() {
        Some(items) => items
            .iter()
            .filter_map(|item| item.as_message().cloned())
            .collect(),
        None => Vec::new(),
    }
}

/// The (repo, branch) a `CreateBranchRequest` names, using the legacy `s_branch` when `branch`
/// is unset, as pachd does.
pub fn branch_of(request: &DynamicMessage) -> (String, String) {
    match (
        string_at(request, &["branch", "repo", "name"]),
        string_at(request, &["branch", "name"]),
    ) {
        (Some(repo), Some(name)) => (repo, name),
        _ => (
            string_at(request, &["head", "repo", "name"]).unwrap_or_default(),
            string_at(request, &["s_branch"]).unwrap_or_default(),
        ),
    }
}

/// The repo names a pipeline reads, in order, from any version's `Input` tree (atom, pfs,
/// cross, union, join, group, cron, git).
pub fn input_repos(input: &DynamicMessage, out: &mut Vec<String>) {
    for single in ["atom", "pfs"] {
        if let Some(repo) = string_at(input, &[single, "repo"])
            && !out.contains(&repo)
        {
            out.push(repo);
        }
    }
    if let Some(repo) =
        string_at(input, &["cron", "repo"]).or_else(|| string_at(input, &["cron", "name"]))
        && !out.contains(&repo)
    {
        out.push(repo);
    }
    if let Some(repo) = string_at(input, &["git", "name"])
        && !out.contains(&repo)
    {
        out.push(repo);
    }
    for nested in ["cross", "union", "join", "group"] {
        for child in messages_at(input, nested) {
            input_repos(&child, out);
        }
    }
}

/// Counts fields the descriptors do not model, recursively.
pub fn unknown_field_count(message: &DynamicMessage) -> usize {
    let mut count = message.unknown_fields().count();
    for (_, value) in message.fields() {
        count += unknown_in_value(value);
    }
    count
}

fn unknown_in_value(value: &Value) -> usize {
    match value {
        Value::Message(inner) => unknown_field_count(inner),
        Value::List(items) => items.iter().map(unknown_in_value).sum(),
        Value::Map(entries) => entries.values().map(unknown_in_value).sum(),
        _ => 0,
    }
}
