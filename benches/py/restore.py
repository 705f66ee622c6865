"""python-pachyderm peer of `ankus restore`: `client.restore()` fed from a pachctl-format dump.

usage: restore.py SANDBOX_DIR|HOST:PORT DUMP
"""

import json
import sys

import pachformat
import peer
from python_pachyderm.proto.admin import admin_pb2

sandbox_dir, dump = sys.argv[1], sys.argv[2]
client = peer.client(sandbox_dir, "new")
count = 0


def requests():
    global count
    for op_bytes in pachformat.read_records(dump):
        count += 1
        yield admin_pb2.RestoreRequest(op=admin_pb2.Op.FromString(op_bytes))


client.restore(requests())
print(json.dumps({"records": count}))
