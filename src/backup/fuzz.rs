//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), kept in the library so the
//! regular test suite runs them over the seed corpus too. Each takes arbitrary bytes and
//! must return without panicking and without allocating more than the input justifies.

use super::edit::{apply_json, request_json};
use super::inventory::InventoryBuilder;
use super::op::Op;
use super::reader::{Record, RecordReader};
use super::verify::verify_bytes;
use super::wire::classify;

/// Records read from one input at most; a fuzz input is small, so this only bounds time.
const MAX_RECORDS: usize = 4096;

/// A dump as arbitrary bytes: the record reader, op classification and the inventory over
/// every record, then the whole verify pass.
pub fn dump_reader(data: &[u8]) {
    if let Ok(reader) = RecordReader::new(std::io::Cursor::new(data.to_vec())) {
        let mut inventory = InventoryBuilder::default();
        for record in reader.take(MAX_RECORDS) {
            let Ok(record) = record else { break };
            let Ok(op) = Op::from_record(record) else {
                break;
            };
            if inventory.add(&op).is_err() {
                break;
            }
            let _ = op.name();
        }
    }
    let _ = verify_bytes(data);
}

/// One serialized `admin.Op` as arbitrary bytes: classification, typed decoding, the short
/// name and repo, the script view (JSON) and an edit that writes it back unchanged.
pub fn op_decoder(data: &[u8]) {
    if classify(data).is_err() {
        return;
    }
    let record = Record {
        index: 0,
        offset: 0,
        bytes: data.to_vec(),
    };
    let Ok(op) = Op::from_record(record) else {
        return;
    };
    let _ = op.name();
    let _ = op.repo();
    if op.request().is_err() {
        return;
    }
    let Ok(json) = request_json(&op) else {
        return;
    };
    // An op that decodes can be shown to a script and written back as the same kind.
    if let Ok(edited) = apply_json(&op, &json) {
        let again = classify(&edited.bytes);
        assert_eq!(
            again,
            Ok((op.version, op.kind)),
            "an unchanged edit keeps the op's version and kind"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_accept_empty_and_tiny_inputs() {
        for input in [
            &b""[..],
            b"\xff",
            b"\xff\x06\x00\x00sNaPpY",
            b"\x00\x00\x00\x00",
        ] {
            dump_reader(input);
            op_decoder(input);
        }
    }
}
