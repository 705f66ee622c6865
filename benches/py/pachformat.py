"""pachctl's dump format for the python-pachyderm peers: snappy framing around
``[int64 LE length][admin.Op]`` records.

python-snappy's framing (``snappy.StreamCompressor``) is used when it is importable, as a
Python user would. Without it, a minimal pure-python framing writes stored (uncompressed,
type 0x01) chunks with masked CRC-32C checksums: no compression work at all (which favours
Python on CPU), but a pure-python CRC-32C (which does not); the results say which was used.
"""

import struct

try:
    import snappy  # python-snappy

    BACKEND = "python-snappy " + getattr(snappy, "__version__", "")
except ImportError:  # pragma: no cover - depends on the venv
    snappy = None
    BACKEND = "pure-python stored chunks"

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def _crc32c(data):
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class _StoredFramer:
    """Snappy framing with uncompressed chunks (at most 64 KiB of data each)."""

    def __init__(self):
        self.started = False

    def add_chunk(self, data):
        out = []
        if not self.started:
            out.append(b"\xff\x06\x00\x00sNaPpY")
            self.started = True
        view = memoryview(data)
        for start in range(0, len(view), 65536):
            piece = bytes(view[start : start + 65536])
            body = struct.pack("<I", _masked(_crc32c(piece))) + piece
            out.append(b"\x01" + struct.pack("<I", len(body))[:3] + body)
        return b"".join(out)


class DumpWriter:
    """Writes records to a binary file object."""

    def __init__(self, sink):
        self.sink = sink
        self.framer = snappy.StreamCompressor() if snappy else _StoredFramer()
        self.records = 0

    def write_op(self, op_bytes):
        self.sink.write(self.framer.add_chunk(struct.pack("<q", len(op_bytes)) + op_bytes))
        self.records += 1


def read_records(path):
    """Yields the ``admin.Op`` bytes of every record of a snappy-framed dump."""
    if snappy is None:
        raise SystemExit("reading dumps needs python-snappy (pip install python-snappy)")
    decompressor = snappy.StreamDecompressor()
    buffer = bytearray()
    with open(path, "rb") as source:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            buffer += decompressor.decompress(chunk)
            offset = 0
            while len(buffer) - offset >= 8:
                (length,) = struct.unpack_from("<q", buffer, offset)
                if len(buffer) - offset - 8 < length:
                    break
                yield bytes(buffer[offset + 8 : offset + 8 + length])
                offset += 8 + length
            del buffer[:offset]
    if buffer:
        raise SystemExit(f"{path}: {len(buffer)} trailing bytes")
