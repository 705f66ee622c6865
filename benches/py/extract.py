"""python-pachyderm peer of `ankus extract`: `client.extract()` into a pachctl-format dump.

usage: extract.py SANDBOX_DIR|HOST:PORT OUT
"""

import json
import os
import sys

import pachformat
import peer

sandbox_dir, out = sys.argv[1], sys.argv[2]
client = peer.client(sandbox_dir, "old")
with open(out, "wb") as sink:
    writer = pachformat.DumpWriter(sink)
    for op in client.extract():
        writer.write_op(op.SerializeToString())
    sink.flush()
    os.fsync(sink.fileno())
print(json.dumps({"records": writer.records, "framing": pachformat.BACKEND}))
