//! A pass-through gRPC codec, so extract and restore forward `admin.Op` messages byte for
//! byte (never decoded and re-encoded), plus the one piece of protobuf framing restore needs.

use bytes::{Buf, BufMut, Bytes};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A codec whose messages are the serialized protobuf bytes themselves.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// Writes message bytes as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawEncoder;

/// Reads message bytes as they are.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let length = src.remaining();
        Ok(Some(src.copy_to_bytes(length)))
    }
}

/// The codec of restore streams: each item is a serialized `admin.Op`, written as the
/// `admin.RestoreRequest` that holds it (see [`put_restore_request`]) straight into the
/// outgoing buffer, so a 10 MiB block op is copied once. The stream may have to be abandoned:
/// an `Err(reason)` item makes the encoder fail, which resets the HTTP/2 stream with
/// INTERNAL_ERROR. A plain cancel would not do: hyper-based servers read a CANCEL reset as the
/// clean end of the request stream.
#[derive(Clone, Copy, Debug, Default)]
pub struct AbortableCodec;

/// The encoder of [`AbortableCodec`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AbortableEncoder;

impl Codec for AbortableCodec {
    type Encode = Result<Bytes, String>;
    type Decode = Bytes;
    type Encoder = AbortableEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> AbortableEncoder {
        AbortableEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for AbortableEncoder {
    type Item = Result<Bytes, String>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Result<Bytes, String>,
        dst: &mut EncodeBuf<'_>,
    ) -> Result<(), Status> {
        match item {
            Ok(op) => {
                put_restore_request(&op, dst);
                Ok(())
            }
            Err(reason) => Err(Status::aborted(reason)),
        }
    }
}

/// Writes serialized `admin.Op` bytes as a serialized `admin.RestoreRequest{op = 1}`: the tag
/// byte 0x0a (field 1, length-delimited), the varint length, then the op bytes unchanged.
pub fn put_restore_request(op: &[u8], dst: &mut impl BufMut) {
    dst.put_u8(0x0a);
    prost::encoding::encode_varint(op.len() as u64, dst);
    dst.put_slice(op);
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::proto::admin::{Op, Op111, RestoreRequest};
    use crate::proto::pfs_1_11::{CreateRepoRequest, Repo};
    use bytes::BytesMut;

    #[test]
    fn wrapped_op_decodes_as_the_restore_request_prost_would_build() {
        let op = Op {
            op1_11: Some(Op111 {
                repo: Some(CreateRepoRequest {
                    repo: Some(Repo {
                        name: "left".into(),
                    }),
                    description: "d".repeat(300),
                    update: false,
                }),
                ..Op111::default()
            }),
            ..Op::default()
        };
        let op_bytes = op.encode_to_vec();
        let mut wrapped = BytesMut::new();
        put_restore_request(&op_bytes, &mut wrapped);
        let expected = RestoreRequest {
            op: Some(op),
            url: String::new(),
        }
        .encode_to_vec();
        assert_eq!(wrapped.as_ref(), expected.as_slice());
    }

    #[test]
    fn empty_op_is_a_present_empty_field() {
        let mut wrapped = BytesMut::new();
        put_restore_request(&[], &mut wrapped);
        assert_eq!(wrapped.as_ref(), &[0x0a, 0x00]);
    }
}
