"""Drives the ankus sandbox's emulated pachd with the official Python client
(python-pachyderm 6.3.x), unchanged. Usage: sandbox_conformance.py HOST:PORT [RAW_DUMP]

Prints one `ok <step>` line per step; any failure raises (non-zero exit). With RAW_DUMP (a bare
`[int64 LE length][admin.Op]` record stream), also restores it with an auth token and prints the
resulting inventory.
"""
import struct
import sys
import time

import python_pachyderm
from python_pachyderm.proto.admin import admin_pb2
from python_pachyderm.proto.pfs import pfs_pb2
from python_pachyderm.proto.pps import pps_pb2


def ok(step, detail=""):
    print(f"ok {step} {detail}".rstrip(), flush=True)


def wait_state(client, name, state):
    for _ in range(500):
        info = client.inspect_pipeline(name)
        if info.state == state:
            return info
        time.sleep(0.02)
    raise AssertionError(f"pipeline {name} never reached state {state}")


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    client = python_pachyderm.Client(host, int(port))

    version = client.get_remote_version()
    ok("version", f"{version.major}.{version.minor}.{version.micro}")
    cluster = client.inspect_cluster()
    assert cluster.deployment_id, "deployment id is set"
    ok("inspect_cluster", cluster.deployment_id)
    client.health()
    ok("health")

    client.create_repo("images", description="raw images")
    client.create_repo("scratch")
    repos = [r.repo.name for r in client.list_repo()]
    assert repos == ["scratch", "images"], repos
    assert client.inspect_repo("images").description == "raw images"
    ok("repos", ",".join(repos))
    try:
        client.create_repo("images")
        raise AssertionError("duplicate repo accepted")
    except python_pachyderm.RpcError as err:
        assert "repo images already exists" in err.details(), err.details()
    ok("duplicate_repo_error")
    client.delete_repo("scratch")
    assert [r.repo.name for r in client.list_repo()] == ["images"]
    ok("delete_repo")

    with client.commit("images", "master") as commit:
        client.put_file_bytes(commit, "/a.txt", b"hello ")
        client.put_file_bytes(commit, "/a.txt", b"world")
        client.put_file_bytes(commit, "/dir/b.txt", b"bee")
    client.put_file_bytes(("images", "master"), "/c.txt", b"auto commit")
    content = client.get_file(("images", "master"), "/a.txt").read()
    assert content == b"hello world", content
    ok("put_get_file", content.decode())
    files = sorted(f.file.path for f in client.list_file(("images", "master"), "/"))
    assert files == ["/a.txt", "/c.txt", "/dir"], files
    ok("list_file", ",".join(files))
    commits = list(client.list_commit("images"))
    assert len(commits) == 2, len(commits)
    ok("list_commit", str(len(commits)))

    client.create_pipeline(
        "edges",
        transform=pps_pb2.Transform(cmd=["python3", "/edges.py"], image="pachyderm/opencv"),
        input=pps_pb2.Input(pfs=pps_pb2.PFSInput(glob="/*", repo="images")),
    )
    names = [p.pipeline.name for p in client.list_pipeline().pipeline_info]
    assert names == ["edges"], names
    info = wait_state(client, "edges", pps_pb2.PipelineState.PIPELINE_RUNNING)
    assert info.transform.image == "pachyderm/opencv"
    ok("create_pipeline", info.spec_commit.id)
    client.stop_pipeline("edges")
    assert client.inspect_pipeline("edges").stopped is True
    wait_state(client, "edges", pps_pb2.PipelineState.PIPELINE_PAUSED)
    ok("stop_pipeline")
    client.start_pipeline("edges")
    assert client.inspect_pipeline("edges").stopped is False
    wait_state(client, "edges", pps_pb2.PipelineState.PIPELINE_RUNNING)
    ok("start_pipeline")
    jobs = list(client.list_job(pipeline_name="edges"))
    ok("list_job", str(len(jobs)))
    try:
        client.inspect_pipeline("nope")
        raise AssertionError("unknown pipeline accepted")
    except python_pachyderm.RpcError as err:
        assert 'pipeline "nope" not found' in err.details(), err.details()
    ok("unknown_pipeline_error")

    ops = list(client.extract())
    assert all(op.HasField("op1_13") or op.HasField("op1_11") for op in ops)
    ok("extract", str(len(ops)))
    client.delete_pipeline("edges")
    client.delete_repo("images", force=True)
    assert list(client.list_repo()) == []
    client.restore(admin_pb2.RestoreRequest(op=op) for op in ops)
    repos = sorted(r.repo.name for r in client.list_repo())
    assert repos == ["edges", "images"], repos
    assert client.get_file(("images", "master"), "/a.txt").read() == b"hello world"
    assert [p.pipeline.name for p in client.list_pipeline().pipeline_info] == ["edges"]
    ok("restore", ",".join(repos))

    if len(sys.argv) > 2:
        client.delete_pipeline("edges")
        client.delete_all_repos(force=True)
        token = "feedfacefeedfacefeedfacefeedface"
        authed = python_pachyderm.Client(host, int(port), auth_token=token)
        with open(sys.argv[2], "rb") as f:
            data = f.read()
        records, pos = [], 0
        while pos < len(data):
            (length,) = struct.unpack("<q", data[pos : pos + 8])
            op = admin_pb2.Op()
            op.ParseFromString(data[pos + 8 : pos + 8 + length])
            records.append(op)
            pos += 8 + length
        authed.restore(admin_pb2.RestoreRequest(op=op) for op in records)
        repos = [r.repo.name for r in authed.list_repo()]
        ok("fixture_repos", ",".join(repos))
        ok("fixture_jobs", str(len(list(authed.list_job()))))
        bindings = authed.get_cluster_role_bindings()
        ok("fixture_roles", ",".join(sorted(bindings.bindings.keys())))
        ok("whoami", authed.who_am_i().username)
        try:
            client.list_repo()
            raise AssertionError("auth not enforced")
        except python_pachyderm.RpcError as err:
            ok("no_token_error", err.details())


if __name__ == "__main__":
    main()
