//! Cheap classification of serialized `admin.Op` records without decoding them: which
//! `op1_x` field is set (the version) and which field inside it (the kind). Most ops are
//! forwarded byte-for-byte, so this is all the host needs for them.

use std::borrow::Cow;

use prost::encoding::{WireType, decode_key, decode_varint};

/// The pachd dump format a record uses: which `Op.op1_x` field is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpVersion {
    /// `op1_7` (field 1).
    V1_7,
    /// `op1_8` (field 2).
    V1_8,
    /// `op1_9` (field 3).
    V1_9,
    /// `op1_10` (field 4).
    V1_10,
    /// `op1_11` (field 5).
    V1_11,
    /// `op1_12` (field 6).
    V1_12,
    /// `op1_13` (field 7).
    V1_13,
}

impl OpVersion {
    /// Every version, oldest first.
    pub const ALL: [OpVersion; 7] = [
        OpVersion::V1_7,
        OpVersion::V1_8,
        OpVersion::V1_9,
        OpVersion::V1_10,
        OpVersion::V1_11,
        OpVersion::V1_12,
        OpVersion::V1_13,
    ];

    /// The version for `Op` field `number`.
    pub fn from_field(number: u32) -> Option<OpVersion> {
        OpVersion::ALL.get(number.checked_sub(1)? as usize).copied()
    }

    /// The `Op` field number.
    pub fn field(self) -> u32 {
        self as u32 + 1
    }

    /// `1.11`.
    pub fn as_str(self) -> &'static str {
        ["1.7", "1.8", "1.9", "1.10", "1.11", "1.12", "1.13"][self as usize]
    }

    /// The version for a pachd minor release (`7` → 1.7); releases newer than 1.13 have none.
    pub fn from_minor(minor: u32) -> Option<OpVersion> {
        OpVersion::from_field(minor.checked_sub(6)?)
    }

    /// The pachd minor release (`V1_11` → 11).
    pub fn minor(self) -> u32 {
        self as u32 + 7
    }

    /// The message name, `Op1_11`.
    pub fn message_name(self) -> String {
        format!("admin.Op1_{}", self.minor())
    }
}

/// Which operation a record carries: the field set inside `Op1_x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// Object data (1.7/1.8).
    Object,
    /// Tag an object.
    Tag,
    /// Create a repo.
    Repo,
    /// Build a commit.
    Commit,
    /// Create or move a branch.
    Branch,
    /// Create a pipeline.
    Pipeline,
    /// Record a job (1.9+).
    Job,
    /// Alias an object to a block range (1.9+).
    CreateObject,
    /// Block data (1.9+).
    Block,
    /// Set a repo's ACL.
    SetAcl,
    /// Bind cluster roles.
    SetClusterRoleBinding,
    /// Set the auth config.
    SetAuthConfig,
    /// Activate auth.
    ActivateAuth,
    /// Restore a robot token.
    RestoreAuthToken,
    /// Activate enterprise.
    ActivateEnterprise,
    /// Require an auth token.
    CheckAuthToken,
}

impl OpKind {
    /// Every kind, in field order.
    pub const ALL: [OpKind; 16] = [
        OpKind::Object,
        OpKind::Tag,
        OpKind::Repo,
        OpKind::Commit,
        OpKind::Branch,
        OpKind::Pipeline,
        OpKind::Job,
        OpKind::CreateObject,
        OpKind::Block,
        OpKind::SetAcl,
        OpKind::SetClusterRoleBinding,
        OpKind::SetAuthConfig,
        OpKind::ActivateAuth,
        OpKind::RestoreAuthToken,
        OpKind::ActivateEnterprise,
        OpKind::CheckAuthToken,
    ];

    /// The kind for `Op1_x` field `number`.
    pub fn from_field(number: u32) -> Option<OpKind> {
        OpKind::ALL.get(number.checked_sub(2)? as usize).copied()
    }

    /// The `Op1_x` field number.
    pub fn field(self) -> u32 {
        self as u32 + 2
    }

    /// The field name in `Op1_x`, as `backup inspect` reports it.
    pub fn as_str(self) -> &'static str {
        [
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
        ][self as usize]
    }

    /// The kind named `name` (`"create_object"`).
    pub fn parse(name: &str) -> Option<OpKind> {
        OpKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Whether this version's `Op1_x` has the field.
    pub fn exists_in(self, version: OpVersion) -> bool {
        match self {
            OpKind::Object | OpKind::Tag | OpKind::Repo | OpKind::Commit => true,
            OpKind::Branch | OpKind::Pipeline => true,
            OpKind::Job | OpKind::CreateObject | OpKind::Block => version >= OpVersion::V1_9,
            _ => version >= OpVersion::V1_11,
        }
    }
}

/// One field of a serialized message: its number, wire type and the bytes of its value
/// (for length-delimited fields, without the length).
#[derive(Clone, Copy, Debug)]
pub struct Field<'a> {
    /// The field number.
    pub number: u32,
    /// The wire type.
    pub wire_type: WireType,
    /// The value bytes.
    pub value: &'a [u8],
}

/// Splits a serialized message into its top-level fields, or says why it cannot.
pub fn fields(mut bytes: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (number, wire_type) = decode_key(&mut bytes).map_err(|error| error.to_string())?;
        let value = match wire_type {
            WireType::Varint => {
                let start = bytes;
                decode_varint(&mut bytes).map_err(|error| error.to_string())?;
                &start[..start.len() - bytes.len()]
            }
            WireType::SixtyFourBit => take(&mut bytes, 8)?,
            WireType::ThirtyTwoBit => take(&mut bytes, 4)?,
            WireType::LengthDelimited => {
                let length = decode_varint(&mut bytes).map_err(|error| error.to_string())?;
                let length = usize::try_from(length).map_err(|_| "length overflows".to_owned())?;
                take(&mut bytes, length)?
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(format!("field {number} uses deprecated groups"));
            }
        };
        out.push(Field {
            number,
            wire_type,
            value,
        });
    }
    Ok(out)
}

fn take<'a>(bytes: &mut &'a [u8], count: usize) -> Result<&'a [u8], String> {
    if bytes.len() < count {
        return Err(format!(
            "field value needs {count} bytes, {} left",
            bytes.len()
        ));
    }
    let (head, rest) = bytes.split_at(count);
    *bytes = rest;
    Ok(head)
}

/// The version and kind of a serialized `admin.Op`, checking that exactly one version field
/// and exactly one kind field are set.
pub fn classify(op_bytes: &[u8]) -> Result<(OpVersion, OpKind), ClassifyError> {
    let outer = fields(op_bytes).map_err(ClassifyError::NotAnOp)?;
    let mut found = None;
    for field in &outer {
        let Some(version) = OpVersion::from_field(field.number) else {
            return Err(ClassifyError::NotAnOp(format!(
                "unexpected field {} in Op",
                field.number
            )));
        };
        if field.wire_type != WireType::LengthDelimited {
            return Err(ClassifyError::NotAnOp(format!(
                "Op field {} is not a message",
                field.number
            )));
        }
        if found.is_some() {
            return Err(ClassifyError::NotAnOp(
                "more than one op version set".into(),
            ));
        }
        found = Some((version, field.value));
    }
    let (version, inner) = found.ok_or(ClassifyError::NoVersion)?;
    let inner_fields = fields(inner).map_err(ClassifyError::NotAnOp)?;
    let mut kind = None;
    for field in &inner_fields {
        let this = OpKind::from_field(field.number)
            .filter(|candidate| candidate.exists_in(version))
            .ok_or_else(|| {
                ClassifyError::NotAnOp(format!(
                    "unexpected field {} in Op1_{}",
                    field.number,
                    version.minor()
                ))
            })?;
        if field.wire_type != WireType::LengthDelimited {
            return Err(ClassifyError::NotAnOp(format!(
                "Op1_{} field {} is not a message",
                version.minor(),
                field.number
            )));
        }
        if kind.is_some_and(|earlier| earlier != this) {
            return Err(ClassifyError::NotAnOp(format!(
                "more than one operation set in Op1_{}",
                version.minor()
            )));
        }
        kind = Some(this);
    }
    let kind = kind.ok_or_else(|| {
        ClassifyError::NotAnOp(format!("Op1_{} has no operation set", version.minor()))
    })?;
    Ok((version, kind))
}

/// Why a record could not be classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassifyError {
    /// Not an `Op` at all.
    NotAnOp(String),
    /// An `Op` with no version field.
    NoVersion,
}

/// The bytes of the inner request message (the field inside `Op1_x`), as protobuf reads
/// them: a message field given more than once is the merge of every copy (later scalars win,
/// sub-messages merge field by field, lists append), which is what their concatenation decodes
/// to. pachd reads a record that way, so reading only one copy would check something else
/// than what pachd applies. One copy, the normal case, is borrowed.
pub fn inner_request(op_bytes: &[u8]) -> Option<Cow<'_, [u8]>> {
    let outer = fields(op_bytes).ok()?;
    let inner = outer.first()?.value;
    let copies: Vec<&[u8]> = fields(inner)
        .ok()?
        .into_iter()
        .map(|field| field.value)
        .collect();
    match copies.as_slice() {
        [] => None,
        [only] => Some(Cow::Borrowed(*only)),
        _ => Some(Cow::Owned(copies.concat())),
    }
}

/// Wraps a serialized inner request into an `Op` of `version` and `kind`.
pub fn wrap(version: OpVersion, kind: OpKind, request: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(request.len() + 8);
    prost::encoding::encode_key(kind.field(), WireType::LengthDelimited, &mut inner);
    prost::encoding::encode_varint(request.len() as u64, &mut inner);
    inner.extend_from_slice(request);
    let mut outer = Vec::with_capacity(inner.len() + 8);
    prost::encoding::encode_key(version.field(), WireType::LengthDelimited, &mut outer);
    prost::encoding::encode_varint(inner.len() as u64, &mut outer);
    outer.extend_from_slice(&inner);
    outer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_ops_classify_back() {
        let op = wrap(OpVersion::V1_11, OpKind::Repo, b"\x0a\x04\x0a\x02ab");
        assert_eq!(classify(&op), Ok((OpVersion::V1_11, OpKind::Repo)));
        assert_eq!(
            inner_request(&op).as_deref(),
            Some(&b"\x0a\x04\x0a\x02ab"[..])
        );
        let empty = wrap(OpVersion::V1_13, OpKind::CheckAuthToken, b"");
        assert_eq!(
            classify(&empty),
            Ok((OpVersion::V1_13, OpKind::CheckAuthToken))
        );
    }

    #[test]
    fn non_ops_are_rejected_with_a_reason() {
        assert_eq!(classify(b""), Err(ClassifyError::NoVersion));
        assert!(matches!(
            classify(b"\x08\x01"),
            Err(ClassifyError::NotAnOp(_))
        ));
        assert!(matches!(
            classify(b"\xff\xff"),
            Err(ClassifyError::NotAnOp(_))
        ));
        let job_in_1_7 = wrap(OpVersion::V1_7, OpKind::Job, b"");
        assert!(matches!(
            classify(&job_in_1_7),
            Err(ClassifyError::NotAnOp(_))
        ));
    }
}
