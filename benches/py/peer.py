"""Shared by the python-pachyderm peers: a client for a sandbox context or a pachd address."""

import json
import os

import grpc
import python_pachyderm
from python_pachyderm.service import Service

# pachd chunks extracted blocks at 10 MiB (half its 20 MiB gRPC limit); gRPC Python accepts
# 4 MiB messages unless told otherwise, so a Python user must raise the limit as pachctl does.
_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def client(sandbox_dir, context, raise_limits=True):
    """A python_pachyderm.Client for context `old` or `new` of the sandbox in `sandbox_dir`,
    or, when `sandbox_dir` is not a directory but `HOST:PORT`, for that pachd (a real one,
    `benches/real.py`; `context` is then unused)."""
    if os.path.isdir(sandbox_dir):
        with open(os.path.join(sandbox_dir, "sandbox.json")) as f:
            info = json.load(f)
        address = info["clusters"][context]["address"].removeprefix("grpc://")
    else:
        address = sandbox_dir.removeprefix("grpc://")
    host, port = address.rsplit(":", 1)
    c = python_pachyderm.Client(host=host, port=int(port))
    if raise_limits:
        channel = grpc.insecure_channel(c.address, options=_OPTIONS)
        for service in (Service.ADMIN,):
            c._stubs[service] = service.stub(channel)
    return c
