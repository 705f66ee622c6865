//! Ops as JSON for scripts, and edits back: an edited op keeps every field the JSON did not
//! show (unknown fields, and nested messages' unknown fields) because edits are merged into
//! the decoded original rather than replacing it.

use prost_reflect::{DeserializeOptions, DynamicMessage, ReflectMessage, SerializeOptions, Value};

use super::error::BackupError;
use super::op::Op;

fn serialize_options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(true)
}

/// The op's inner request as JSON (proto field names, enums by name, bytes as base64).
pub fn request_json(op: &Op) -> Result<serde_json::Value, BackupError> {
    let request = op.request()?;
    super::op::register_secrets(op.kind, &request);
    request
        .serialize_with_options(serde_json::value::Serializer, &serialize_options())
        .map_err(|error| BackupError::Edit {
            record: op.index,
            message: error.to_string(),
        })
}

/// A copy of `op` whose request takes the fields of `edited` (JSON in the `request_json`
/// shape); fields the JSON omits are cleared, fields the protos do not model are kept.
pub fn apply_json(op: &Op, edited: &serde_json::Value) -> Result<Op, BackupError> {
    let edit_error = |message: String| BackupError::Edit {
        record: op.index,
        message,
    };
    let mut original = op.request()?;
    let descriptor = original.descriptor();
    let replacement = DynamicMessage::deserialize_with_options(
        descriptor,
        edited.clone(),
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
    .map_err(|error| edit_error(error.to_string()))?;
    merge_known(&mut original, &replacement);
    Ok(Op::from_request(op.index, op.version, op.kind, &original))
}

/// Makes `target`'s known fields equal to `source`'s, recursing into messages present on both
/// sides so their unknown fields survive.
fn merge_known(target: &mut DynamicMessage, source: &DynamicMessage) {
    for field in target.descriptor().fields() {
        if !source.has_field(&field) {
            target.clear_field(&field);
            continue;
        }
        let new_value = source.get_field(&field).into_owned();
        match (target.get_field_mut(&field), new_value) {
            (Value::Message(existing), Value::Message(incoming)) => {
                merge_known(existing, &incoming);
            }
            (slot, incoming) => *slot = incoming,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::reader::Record;
    use crate::backup::wire::{OpKind, OpVersion, wrap};

    fn pipeline_op(extra_unknown: &[u8]) -> Op {
        use prost::Message;
        let request = crate::proto::pps::CreatePipelineRequest {
            pipeline: Some(crate::proto::pps::Pipeline {
                name: "sort".into(),
            }),
            transform: Some(crate::proto::pps::Transform {
                image: "ubuntu:16.04".into(),
                cmd: vec!["/bin/bash".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut bytes = request.encode_to_vec();
        bytes.extend_from_slice(extra_unknown);
        Op::from_record(Record {
            index: 3,
            offset: 0,
            bytes: wrap(OpVersion::V1_13, OpKind::Pipeline, &bytes),
        })
        .expect("op")
    }

    #[test]
    fn editing_the_image_keeps_unknown_fields() {
        // Field 999 (varint 7) is not in any pachd proto.
        let op = pipeline_op(b"\xb8\x3e\x07");
        let mut json = request_json(&op).expect("json");
        assert_eq!(json["transform"]["image"], "ubuntu:16.04");
        json["transform"]["image"] = "registry.local/ubuntu:16.04".into();
        let edited = apply_json(&op, &json).expect("edit");
        let request = edited.request().expect("decode");
        assert_eq!(
            crate::backup::op::string_at(&request, &["transform", "image"]).as_deref(),
            Some("registry.local/ubuntu:16.04")
        );
        assert_eq!(request.unknown_fields().count(), 1);
        assert!(edited.request_bytes().ends_with(b"\xb8\x3e\x07"));
    }

    #[test]
    fn unknown_json_fields_are_refused_with_the_record_number() {
        let op = pipeline_op(b"");
        let error = apply_json(&op, &serde_json::json!({"no_such_field": 1})).expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("op at record 3 cannot be edited"),
            "{error}"
        );
    }
}
