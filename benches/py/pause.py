"""python-pachyderm peer of `stop_all(); start_all()`: the seed's

    pachctl list pipeline --raw | jq -r '.pipeline.name' | xargs -P3 -n1 -I{} pachctl stop pipeline {}

(then the same with `start`), with three long-lived worker processes standing in for xargs'
three `pachctl` processes (kinder to the peer: no process start per pipeline), then waiting
until every pipeline is paused (running) by polling ListPipeline on ankus' schedule (62.5 ms,
doubling up to 500 ms).

usage: pause.py SANDBOX_DIR|HOST:PORT   prints JSON: seconds of each phase
"""

import json
import multiprocessing
import sys
import time

import peer

WORKERS = 3
sandbox_dir = sys.argv[1]
_worker_client = None


def _init():
    global _worker_client
    _worker_client = peer.client(sandbox_dir, "old", raise_limits=False)


def _stop(name):
    _worker_client.stop_pipeline(name)


def _start(name):
    _worker_client.start_pipeline(name)


def wait_all(client, wanted):
    delay = 0.0625
    while True:
        infos = client.list_pipeline().pipeline_info
        if all(info.state in wanted for info in infos):
            return len(infos)
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def main():
    from python_pachyderm.proto.pps import pps_pb2

    paused = {pps_pb2.PipelineState.PIPELINE_PAUSED}
    running = {pps_pb2.PipelineState.PIPELINE_RUNNING, pps_pb2.PipelineState.PIPELINE_STANDBY}
    phases = {}
    started = time.perf_counter()
    # Forked before this process opens any gRPC channel (gRPC does not survive a fork).
    with multiprocessing.get_context("fork").Pool(WORKERS, initializer=_init) as pool:
        client = peer.client(sandbox_dir, "old", raise_limits=False)
        for name, action, wanted in (("pause", _stop, paused), ("resume", _start, running)):
            begun = time.perf_counter()
            names = [info.pipeline.name for info in client.list_pipeline().pipeline_info]
            for _ in pool.imap_unordered(action, names, chunksize=1):
                pass
            count = wait_all(client, wanted)
            phases[name] = time.perf_counter() - begun
    phases["total"] = time.perf_counter() - started
    phases["pipelines"] = count
    print(json.dumps(phases))


if __name__ == "__main__":
    main()
