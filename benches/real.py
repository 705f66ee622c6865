#!/usr/bin/env python3
"""The `real` benchmark of `benches/run`: ankus against pachctl 1.9.0 and python-pachyderm on a
REAL pachd 1.9.0 (the `real-pachd` script of the shared peers: etcd + pachd with local storage,
Kubernetes API from an `ankus sandbox`, no worker pods), and writes benches/RESULTS-real.md.

1. generate: one real pachd filled through pachctl 1.9.0 with a metadata-heavy cluster (data
   repos of many commits of many small, distinct files; an input repo; pipelines on it), then
   `pachctl extract` of it (untimed) as the dump every restore is fed;
2. extract that cluster: ankus vs `pachctl extract > file` vs python-pachyderm;
3. pause + resume every pipeline of it: ankus `stop_all(); start_all()` vs the upstream
   guide's `pachctl list pipeline --raw | jq -r '.pipeline.name' | xargs -P3 -n1 -I{}
   pachctl stop pipeline {}` (then `start`) with the real pachctl, timed both when xargs
   returns and until `pachctl list pipeline` reports every pipeline paused (running), vs
   python-pachyderm with three worker processes (benches/py/pause.py);
4. restore the dump into a fresh real pachd for every run (started and stopped untimed):
   ankus vs `pachctl restore < file` vs python-pachyderm; each restored cluster is counted
   through python-pachyderm and must hold what the generated one holds.

Tools alternate in rotating order; every figure is a ratio of medians from this one run; peak
RSS from wait4. Not meant to be run by hand (`BENCH_ONLY=real benches/run` sets it up), but it
takes only the paths it is given.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from harness import Failed, command_output, fmt_s, log, machine, median, rotations

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, "py")
TOOLS = ["ankus", "pachctl", "python-pachyderm"]
PAUSE_TOOLS = ["ankus", "pachctl"]

# The seed's pattern (shared/seeds/004: "Pause all pipeline and data loading operations" and
# the matching restart), verbatim but for the verb.
SEED = ("set -o pipefail; pachctl list pipeline --raw | jq -r '.pipeline.name'"
        " | xargs -P3 -n1 -I{{}} pachctl {verb} pipeline {{}}")


class Run:
    """One finished process: seconds, peak RSS (KiB, wait4), CPU seconds (user + system,
    its waited-for children included), stdout."""

    def __init__(self, seconds, rss_kib, cpu, out):
        self.seconds, self.rss_kib, self.cpu, self.out = seconds, rss_kib, cpu, out


def timed(argv, work, env=None, cwd=None, stdin_path=None, stdout_path=None, shell=False):
    """Runs argv (stdin from / stdout to a file when given; a stdout file is fsynced inside
    the timed span, as ankus and the python peer fsync theirs). Fails loudly on a non-zero exit."""
    err_path = os.path.join(work, "last-stderr.txt")
    with open(err_path, "wb") as err_f:
        stdin_f = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        out_f = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin_f, stdout=out_f,
                                stderr=err_f, shell=shell,
                                executable="/bin/bash" if shell else None)
        out = proc.stdout.read() if not stdout_path else b""
        _, status, usage = os.wait4(proc.pid, 0)
        if stdout_path:
            os.fsync(out_f.fileno())
            out_f.close()
        seconds = time.perf_counter() - started
        if stdin_path:
            stdin_f.close()
        if proc.stdout:
            proc.stdout.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(err_path, "rb") as f:
            err = f.read().decode(errors="replace")
        shown = argv if isinstance(argv, str) else " ".join(map(str, argv))
        raise Failed(f"{shown} exited {proc.returncode}:\n"
                     f"{out.decode(errors='replace')[-2000:]}\n{err[-4000:]}")
    return Run(seconds, usage.ru_maxrss, usage.ru_utime + usage.ru_stime,
               out.decode(errors="replace"))


def quiet(argv, env=None, check=True, **kwargs):
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise Failed(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                     f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


class RealPachd:
    """`real-pachd start DIR` (etcd + pachd 1.9.0 + a private ankus sandbox for its Kubernetes
    API) in a directory of its own; `stop` kills exactly what it started (DIR/pids)."""

    def __init__(self, cfg, directory):
        self.cfg, self.directory = cfg, directory
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        started = time.perf_counter()
        env = dict(os.environ, ANKUS=cfg.ankus, PATH=f"{cfg.etcd_wrapper}:{os.environ['PATH']}")
        proc = quiet([cfg.real_pachd, "start", directory], env=env, check=False, timeout=300)
        if proc.returncode != 0:
            self.stop()
            raise Failed(f"real-pachd start {directory} failed:\n{proc.stderr[-3000:]}")
        self.address = proc.stdout.strip().splitlines()[-1]
        self.env = dict(os.environ, PACH_CONFIG=os.path.join(directory, "pachctl-config.json"),
                        PACHD_ADDRESS=self.address, PATH=f"{cfg.bin}:{os.environ['PATH']}")
        self.start_seconds = time.perf_counter() - started

    def pachctl(self, *args, stdin=None):
        return quiet([self.cfg.pachctl, *args], env=self.env, input=stdin)

    def stop(self):
        quiet([self.cfg.real_pachd, "stop", self.directory], check=False, timeout=180)

    def remove(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def etcd_wrapper(work):
    """A directory with an `etcd` that runs the installed one as pachd 1.9.0's own deployment
    does in this respect: `--max-txn-ops=5000` (src/server/pkg/deploy/assets/assets.go at
    v1.9.0; etcd's default is 128). real-pachd starts etcd with the default, and restoring
    1.9's extract order (pipelines before their input's commits) then fails once one input
    feeds more than ~20 pipelines: the input's commit is propagated to every pipeline's output
    branch in one transaction ("etcdserver: too many operations in txn request (1203
    comparisons, 1203 writes...)" at 200 pipelines, for pachctl restore as for every client)."""
    etcd = shutil.which("etcd")
    if not etcd:
        raise Failed("no etcd on PATH (apt-get install -y etcd-server)")
    directory = os.path.join(work, "etcd-bin")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "etcd"), "w") as f:
        f.write(f"#!/bin/sh\n# benches/real.py: etcd as pachd 1.9.0's deployment runs it\n"
                f"exec {etcd} \"$@\" --max-txn-ops=5000\n")
    os.chmod(os.path.join(directory, "etcd"), 0o755)
    return directory


def write_script(work, name, body):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(body.strip() + "\n")
    return path


def inspect(cfg, dump):
    return json.loads(quiet([cfg.ankus, "backup", "inspect", dump, "--output", "json"]).stdout)


def count(cfg, address):
    """The cluster's repos, commits, pipelines and files, through python-pachyderm."""
    out = quiet([cfg.python, os.path.join(PY, "real_count.py"), address],
                env=dict(os.environ, PYTHONPATH=PY)).stdout
    return json.loads(out)


def pipeline_states(cfg, pachd):
    """State of every pipeline, as `pachctl list pipeline --raw` prints them."""
    raw = pachd.pachctl("list", "pipeline", "--raw").stdout
    decoder, states, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(raw) and raw[i].isspace():
            i += 1
        if i >= len(raw):
            return states
        info, i = decoder.raw_decode(raw, i)
        states.append(info.get("state", "PIPELINE_STARTING"))


# ------------------------------------------------------------------------------- generate

def generate(cfg, pachd, work):
    """Fills `pachd` through pachctl: cfg.repos data repos of cfg.commits commits of
    cfg.files distinct small files each (one `put file -r` per commit), an input repo `in`,
    then cfg.real_pipelines pipelines reading it."""
    staging = os.path.join(work, "staging")
    started = time.perf_counter()
    for r in range(cfg.repos):
        repo = f"data{r:03d}"
        pachd.pachctl("create", "repo", repo)
        for c in range(cfg.commits):
            # The same file names every commit, overwritten in place: no freed inodes (see
            # bench_restore).
            os.makedirs(staging, exist_ok=True)
            for f in range(cfg.files):
                with open(os.path.join(staging, f"f{f:04d}.txt"), "w") as out:
                    out.write(f"{repo} commit {c} file {f}\n")
            pachd.pachctl("put", "file", "-r", f"{repo}@master:/c{c:03d}", "-f", staging)
        log(f"generate: {repo} ({cfg.commits} commits x {cfg.files} files),"
            f" {time.perf_counter() - started:.0f} s so far")
    pachd.pachctl("create", "repo", "in")
    staging = os.path.join(work, "staging-in")
    os.makedirs(staging, exist_ok=True)
    for f in range(20):
        with open(os.path.join(staging, f"in{f:02d}.txt"), "w") as out:
            out.write(f"input {f}\n")
    pachd.pachctl("put", "file", "-r", "in@master:/", "-f", staging)
    specs = os.path.join(work, "pipelines.json")
    with open(specs, "w") as out:
        for p in range(cfg.real_pipelines):
            out.write(json.dumps({
                "pipeline": {"name": f"p{p:03d}"},
                "transform": {"image": "ubuntu:16.04", "cmd": ["/bin/bash"],
                              "stdin": ["cp /pfs/in/* /pfs/out/"]},
                "input": {"pfs": {"repo": "in", "glob": "/*"}},
            }) + "\n")
    pachd.pachctl("create", "pipeline", "-f", specs)
    log(f"generate: {cfg.real_pipelines} pipelines created,"
        f" {time.perf_counter() - started:.0f} s in all")
    return time.perf_counter() - started


def wait_states(cfg, pachd, wanted, timeout):
    """Polls `pachctl list pipeline --raw` on ankus' schedule (62.5 ms doubling to 500 ms)
    until every pipeline's state is in `wanted`; returns the number of polls."""
    deadline, delay, polls = time.monotonic() + timeout, 0.0625, 0
    while True:
        states = pipeline_states(cfg, pachd)
        polls += 1
        if states and all(s in wanted for s in states):
            return polls
        if time.monotonic() > deadline:
            raise Failed(f"pipelines not all {sorted(wanted)} after {timeout} s: "
                         f"{sorted(set(states))}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


# -------------------------------------------------------------------------------- extract

def bench_extract(cfg, pachd, results):
    work = os.path.join(cfg.work, "extract")
    os.makedirs(work, exist_ok=True)
    outs = {tool: os.path.join(work, f"{tool}.dump") for tool in TOOLS}
    script = write_script(work, "extract.rhai", """
let c = pachd::connect(arg("to"));
c.extract(#{ to: arg("out") });
""")
    times = {tool: [] for tool in TOOLS}
    rss = {tool: [] for tool in TOOLS}
    cpu = {tool: [] for tool in TOOLS}
    for round_index, order in rotations(TOOLS, cfg.heavy):
        for tool in order:
            out = outs[tool]
            for leftover in (out, out.removesuffix(".dump") + ".manifest.json",
                             out + ".manifest.json"):
                if os.path.exists(leftover):
                    os.remove(leftover)
            if tool == "ankus":
                run = timed([cfg.ankus, "-q", "run", script, "-a", f"to={pachd.address}",
                             "-a", f"out={out}", "--yes"], work, cwd=work)
            elif tool == "pachctl":
                run = timed([cfg.pachctl, "extract"], work, env=pachd.env, stdout_path=out)
            else:
                run = timed([cfg.python, os.path.join(PY, "extract.py"), pachd.address, out],
                            work)
            times[tool].append(run.seconds)
            rss[tool].append(run.rss_kib)
            cpu[tool].append(run.cpu)
            log(f"extract round {round_index + 1} {tool}: {run.seconds:.2f}s,"
                f" {run.rss_kib / 1024:.0f} MiB")
    inventories = {tool: inspect(cfg, outs[tool]) for tool in TOOLS}
    first = inventories["pachctl"]
    for tool, inv in inventories.items():
        if inv["records"] != first["records"] or inv["kinds"] != first["kinds"]:
            raise Failed(f"extracts differ: {tool} {inv['kinds']} pachctl {first['kinds']}")
    results["extract"] = {
        "times": times, "rss_kib": rss, "cpu_seconds": cpu,
        "file_bytes": {tool: os.path.getsize(outs[tool]) for tool in TOOLS},
    }
    for out in outs.values():
        os.remove(out)


# ---------------------------------------------------------------------------------- pause

def seed_phase(cfg, pachd, work, verb, wanted):
    """The guide's one-liner for `verb`, then polling until every pipeline is in `wanted`."""
    began = time.perf_counter()
    timed(SEED.format(verb=verb), work, env=pachd.env, shell=True)
    calls = time.perf_counter() - began
    wait_states(cfg, pachd, wanted, timeout=300)
    return calls, time.perf_counter() - began


def wait_quiet(pachd, quiet_for=2.0, timeout=900):
    """Waits until pachd has sent no Kubernetes request for `quiet_for` seconds (by the size
    of real-pachd's DIR/kube-requests.log); returns the seconds waited. pachd 1.9's
    Kubernetes client (client-go defaults: 5 requests/s, bursts of 10) works through every
    pipeline's replication controller one after another, long after the pipeline's state
    changed; a run must not start with the previous run's work still queued."""
    path = os.path.join(pachd.directory, "kube-requests.log")
    started = time.monotonic()
    last_size, last_change = -1, started
    while True:
        size = os.path.getsize(path)
        now = time.monotonic()
        if size != last_size:
            last_size, last_change = size, now
        elif now - last_change >= quiet_for:
            return now - started
        if now - started > timeout:
            raise Failed(f"pachd still sending Kubernetes requests after {timeout} s")
        time.sleep(0.25)


def kube_requests(pachd):
    with open(os.path.join(pachd.directory, "kube-requests.log"), "rb") as f:
        return sum(1 for line in f if b" > " in line)


def bench_pause(cfg, pachd, results):
    work = os.path.join(cfg.work, "pause")
    os.makedirs(work, exist_ok=True)
    script = write_script(work, "pause.rhai", """
let c = pachd::connect(arg("to"));
let t0 = now_ms();
let paused = c.stop_all();
let t1 = now_ms();
let resumed = c.start_all();
let t2 = now_ms();
if paused.len() != resumed.len() { throw "pipelines changed"; }
print(`${paused.len()} ${t1 - t0} ${t2 - t1}`);
""")
    times = {"ankus": [], "pachctl": [], "pachctl+wait": []}
    phases = {"stop calls": [], "stop settled": [], "start calls": [], "start settled": []}
    ankus_phases = {"stop_all": [], "start_all": []}
    drains, requests = {"ankus": [], "pachctl": []}, {"ankus": [], "pachctl": []}
    counts = set()
    failures = []
    for round_index, order in rotations(PAUSE_TOOLS, cfg.pause_runs):
        for tool in order:
            while True:
                try:
                    pause_run(cfg, pachd, work, script, tool, round_index, times, phases,
                              ankus_phases, drains, requests, counts)
                    break
                except Failed as error:
                    # A failed run is a result: recorded, reported, and the slot run again
                    # (after every pipeline is started again, untimed), at most twice per tool.
                    failures.append({"tool": tool, "round": round_index + 1,
                                     "error": str(error)})
                    log(f"pause round {round_index + 1} {tool} FAILED: {error}")
                    if sum(1 for f in failures if f["tool"] == tool) > 2:
                        raise
                    restart_stopped(cfg, pachd, work)
    if counts != {cfg.real_pipelines}:
        raise Failed(f"pause/resume saw {counts} pipelines, expected {cfg.real_pipelines}")
    results["pause"] = {"times": times, "pachctl_phases": phases, "ankus_phases": ankus_phases,
                        "drain_seconds": drains, "kube_requests": requests,
                        "failures": failures}


def restart_stopped(cfg, pachd, work):
    """After a failed run: `pachctl start pipeline` for every stopped pipeline (untimed)."""
    raw = pachd.pachctl("list", "pipeline", "--raw").stdout
    decoder, i, stopped = json.JSONDecoder(), 0, []
    while True:
        while i < len(raw) and raw[i].isspace():
            i += 1
        if i >= len(raw):
            break
        info, i = decoder.raw_decode(raw, i)
        if info.get("stopped"):
            stopped.append(info["pipeline"]["name"])
    log(f"restarting {len(stopped)} stopped pipelines")
    for name in stopped:
        pachd.pachctl("start", "pipeline", name)


def pause_run(cfg, pachd, work, script, tool, round_index, times, phases, ankus_phases,
              drains, requests, counts):
    """One timed pause + resume by `tool`; appends to the lists it is given."""
    paused, running = {"PIPELINE_PAUSED"}, {"PIPELINE_RUNNING", "PIPELINE_STANDBY"}
    # Every run starts from all pipelines running and pachd idle (untimed).
    wait_states(cfg, pachd, running, timeout=600)
    wait_quiet(pachd)
    states = pipeline_states(cfg, pachd)
    before = kube_requests(pachd)
    if tool == "ankus":
        run = timed([cfg.ankus, "-q", "run", script, "-a", f"to={pachd.address}",
                     "--yes"], work, cwd=work)
        n, stop_ms, start_ms = map(int, run.out.split())
        counts.add(n)
        times["ankus"].append(run.seconds)
        ankus_phases["stop_all"].append(stop_ms / 1000)
        ankus_phases["start_all"].append(start_ms / 1000)
        shown = (f"{run.seconds:.2f}s (stop_all {stop_ms / 1000:.2f}s,"
                 f" start_all {start_ms / 1000:.2f}s)")
    else:
        stop_calls, stop_all = seed_phase(cfg, pachd, work, "stop", paused)
        start_calls, start_all = seed_phase(cfg, pachd, work, "start", running)
        counts.add(len(states))
        times["pachctl"].append(stop_calls + start_calls)
        times["pachctl+wait"].append(stop_all + start_all)
        for key, value in (("stop calls", stop_calls), ("stop settled", stop_all),
                           ("start calls", start_calls), ("start settled", start_all)):
            phases[key].append(value)
        shown = (f"xargs {stop_calls + start_calls:.2f}s, until settled"
                 f" {stop_all + start_all:.2f}s")
    drains[tool].append(wait_quiet(pachd))
    requests[tool].append(kube_requests(pachd) - before)
    log(f"pause round {round_index + 1} {tool}: {shown} (then pachd busy"
        f" {drains[tool][-1]:.0f} s more, {requests[tool][-1]} Kubernetes requests)")


# -------------------------------------------------------------------------------- restore

def bench_restore(cfg, results, dump, expected):
    work = os.path.join(cfg.work, "restore")
    os.makedirs(work, exist_ok=True)
    script = write_script(work, "restore.rhai", """
let c = pachd::connect(arg("to"));
let r = c.restore(arg("dump"), #{});
print(r.ops);
""")
    times = {tool: [] for tool in TOOLS}
    rss = {tool: [] for tool in TOOLS}
    cpu = {tool: [] for tool in TOOLS}
    starts, directories = [], []
    try:
        restore_rounds(cfg, script, dump, expected, work, times, rss, cpu, starts, directories)
    finally:
        # Only now: ext4 without a journal (this machine's disk) will not reuse an inode freed
        # in the last 60-300 s and scans past each such inode for every file it creates, so
        # deleting a restored pachd's ~57,000 object files between runs made the next
        # restore 2-3x slower (the same effect as in clone.sh).
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
    results["restore"] = {"times": times, "rss_kib": rss, "cpu_seconds": cpu,
                          "start_seconds": median(starts)}


def restore_rounds(cfg, script, dump, expected, work, times, rss, cpu, starts, directories):
    for round_index, order in rotations(TOOLS, cfg.heavy):
        for tool in order:
            # A fresh real pachd per run (restore wants an empty cluster; `pachctl delete all`
            # empties etcd but leaves every object on disk, so the next restore would find
            # them there), in a directory of its own, kept until every run is over.
            directory = os.path.join(cfg.work, f"pachd-restore-{len(directories) + 1}")
            directories.append(directory)
            pachd = RealPachd(cfg, directory)
            starts.append(pachd.start_seconds)
            os.sync()
            try:
                if tool == "ankus":
                    run = timed([cfg.ankus, "-q", "run", script, "-a", f"to={pachd.address}",
                                 "-a", f"dump={dump}", "--yes"], work, cwd=work)
                elif tool == "pachctl":
                    run = timed([cfg.pachctl, "restore"], work, env=pachd.env, stdin_path=dump)
                else:
                    run = timed([cfg.python, os.path.join(PY, "restore.py"), pachd.address,
                                 dump], work)
                got = count(cfg, pachd.address)
            finally:
                pachd.stop()
            if got != expected:
                raise Failed(f"{tool}'s restored cluster holds {got}, the generated one {expected}")
            times[tool].append(run.seconds)
            rss[tool].append(run.rss_kib)
            cpu[tool].append(run.cpu)
            log(f"restore round {round_index + 1} {tool}: {run.seconds:.2f}s,"
                f" {run.rss_kib / 1024:.0f} MiB")


# --------------------------------------------------------------------------------- report

def ratio(peer, ankus):
    return f"**{peer / ankus:.2f}x**" if ankus > 0 else "-"


def report(cfg, results, finished):
    def py(code):
        return command_output([cfg.python, "-c", code])

    pp_version = py('import importlib.metadata as m; print(m.version("python-pachyderm"))')
    py_version = command_output([cfg.python, "--version"])
    pb_version = py("import google.protobuf as p; print(p.__version__)")
    pachctl_version = command_output([cfg.pachctl, "version", "--client-only"]) or "?"
    s = results["cluster"]
    settings = results.get("config", {})
    lines = [
        "# Benchmarks against a real pachd 1.9.0",
        "",
        f"Generated by `BENCH_ONLY=real benches/run` (`benches/real.py`) from a run that ended"
        f" {datetime.datetime.fromtimestamp(finished, datetime.timezone.utc):%Y-%m-%d %H:%M UTC}."
        " Regenerate it with that command; do not edit it by hand.",
        "",
        f"Machine: {machine()}. Shared and noisy, so every figure is a ratio of medians from"
        " this one run, tools alternating in rotating order; absolute medians stand beside them.",
        f"Server: pachd 1.9.0 from `real-pachd` (etcd 3.4 with `--max-txn-ops=5000` as pachd"
        " 1.9.0's own deployment runs it, LOCAL storage on this machine's disk,"
        " Kubernetes API of an `ankus sandbox` behind a TLS terminator, no worker pods)."
        f" Tools: {command_output([cfg.ankus, '--version'])} (release build), pachctl"
        f" {pachctl_version}, python-pachyderm {pp_version} on {py_version} (protobuf {pb_version}).",
        f"Repetitions: {settings.get('heavy', cfg.heavy)} per tool of extract and restore,"
        f" {settings.get('pause_runs', cfg.pause_runs)} of pause/resume.",
        "",
        f"Cluster: {s['data_repos']} data repos x {s['commits_per_repo']} commits x"
        f" {s['files_per_commit']} distinct small files (one `pachctl put file -r` per commit),"
        f" an input repo `in` (1 commit, 20 files) and {s['pipelines']} pipelines reading it:"
        f" {s['counted']['repos']} repos (pipeline output repos included),"
        f" {s['counted']['commits']} commits, {s['counted']['files']} files at the heads,"
        f" {s['counted']['pipelines']} pipelines. `pachctl extract` of it:"
        f" {s['dump_records']} ops ({', '.join(f'{k} {v}' for k, v in sorted(s['kinds'].items()))}),"
        f" {s['dump_bytes']:,} bytes on disk ({s['record_bytes']:,} of records)."
        f" Generated in {s['generate_seconds']:.0f} s (not timed). pachd creates every"
        " pipeline's replication controller and service afterwards, 5 Kubernetes requests"
        " each at its client's 5/s: extract and restore ran during that trickle; pause"
        f" waited {s.get('backlog_seconds', 0):.0f} s more for it to end"
        f" ({s.get('create_requests', 0)} requests since pachd started).",
        "",
        "Ratio = peer's median time / ankus' median time (higher = ankus faster).",
        "",
        "| benchmark | ankus | pachctl 1.9.0 | python-pachyderm | pachctl / ankus |"
        " python-pachyderm / ankus |",
        "|---|---|---|---|---|---|",
    ]
    details = []

    def rss_of(r, tool):
        return f"{max(r['rss_kib'][tool]) / 1024:.1f} MiB"

    if "extract" in results:
        r = results["extract"]
        t = {k: median(v) for k, v in r["times"].items()}
        lines.append(
            f"| extract (objects included) to a file | {fmt_s(t['ankus'])} |"
            f" {fmt_s(t['pachctl'])} | {fmt_s(t['python-pachyderm'])} |"
            f" {ratio(t['pachctl'], t['ankus'])} | {ratio(t['python-pachyderm'], t['ankus'])} |")
        details += [
            "## Extract",
            "",
            "The generated cluster, from the same pachd every run.",
            "- ankus: `ankus run extract.rhai -a to=ADDR -a out=FILE --yes`,"
            " `pachd::connect(arg(\"to\")).extract(#{ to: arg(\"out\") })` (dump + manifest"
            " written atomically, fsync).",
            "- pachctl: `pachctl extract > FILE`, then fsync of FILE (inside the timed span).",
            "- python-pachyderm: `Client.extract()` into pachctl's format"
            " (`benches/py/extract.py`, python-snappy framing, fsync).",
            "- All three files hold the same number of records of each kind"
            " (`ankus backup inspect`); bytes on disk: "
            + ", ".join(f"{tool} {n:,}" for tool, n in r["file_bytes"].items()) + ".",
            "",
            "| | median | runs | client CPU (median) | peak RSS |",
            "|---|---|---|---|---|",
        ]
        for tool in TOOLS:
            runs = " ".join(f"{x:.2f}" for x in r["times"][tool])
            details.append(f"| {tool} | {fmt_s(t[tool])} | {runs} |"
                           f" {fmt_s(median(r['cpu_seconds'][tool]))} | {rss_of(r, tool)} |")
        details.append("")
    if "restore" in results:
        r = results["restore"]
        t = {k: median(v) for k, v in r["times"].items()}
        lines.append(
            f"| restore that dump into a fresh pachd | {fmt_s(t['ankus'])} |"
            f" {fmt_s(t['pachctl'])} | {fmt_s(t['python-pachyderm'])} |"
            f" {ratio(t['pachctl'], t['ankus'])} | {ratio(t['python-pachyderm'], t['ankus'])} |")
        details += [
            "## Restore",
            "",
            "`pachctl extract` of the generated cluster into a new real pachd for every run"
            f" (started in {r['start_seconds']:.1f} s, median, and stopped outside the timed"
            " span).",
            "- ankus: `ankus run restore.rhai -a to=ADDR -a dump=FILE --yes`,"
            " `c.restore(arg(\"dump\"), #{})`: verifies the whole dump (framing, checksums,"
            " relations) before sending anything, and afterwards asks pachd whether every repo,"
            " pipeline and commit of the dump is there (ListRepo, ListPipeline, a ListCommit per"
            " repo), all inside the timed span; pachctl and python-pachyderm only send.",
            "- pachctl: `pachctl restore < FILE`.",
            "- python-pachyderm: `Client.restore()` fed from the file read with python-snappy"
            " (`benches/py/restore.py`).",
            "- Every restored cluster, counted through python-pachyderm (`benches/py/real_count.py`),"
            " holds what the generated one holds: "
            + ", ".join(f"{v} {k}" for k, v in s["counted"].items()) + ".",
            "",
            "| | median | runs | client CPU (median) | peak RSS |",
            "|---|---|---|---|---|",
        ]
        for tool in TOOLS:
            runs = " ".join(f"{x:.2f}" for x in r["times"][tool])
            details.append(f"| {tool} | {fmt_s(t[tool])} | {runs} |"
                           f" {fmt_s(median(r['cpu_seconds'][tool]))} | {rss_of(r, tool)} |")
        details.append("")
    if "pause" in results:
        r = results["pause"]
        t = {k: median(v) for k, v in r["times"].items()}
        p = {k: median(v) for k, v in r["pachctl_phases"].items()}
        a = {k: median(v) for k, v in r["ankus_phases"].items()}
        d = {k: median(v) for k, v in r["drain_seconds"].items()}
        q = {k: median(v) for k, v in r["kube_requests"].items()}
        n = s["pipelines"]
        lines.append(
            f"| pause + resume {n} pipelines, until every one is paused (running) |"
            f" {fmt_s(t['ankus'])} | {fmt_s(t['pachctl+wait'])} (guide's xargs, then polling)"
            f" | - | {ratio(t['pachctl+wait'], t['ankus'])} | - |")
        lines.append(
            f"| the same, pachctl timed only until each xargs returns | {fmt_s(t['ankus'])} |"
            f" {fmt_s(t['pachctl'])} | - | {ratio(t['pachctl'], t['ankus'])} | - |")
        details += [
            "## Pause and resume",
            "",
            f"The {n} pipelines of the generated cluster (they never get workers, so a started"
            " one is `running`, a stopped one `paused`). Every run starts with all of them"
            " running and pachd idle: no Kubernetes request for 2 s (untimed).",
            "- ankus: one `ankus run pause.rhai -a to=ADDR --yes` of `c.stop_all(); c.start_all();`"
            " (16 calls at a time, then waits until every pipeline reports paused, then running).",
            "- pachctl: the upstream guide's `"
            + SEED.format(verb="stop").removeprefix("set -o pipefail; ")
            + "`, then the same with `start`, with the real pachctl 1.9.0 (a process per"
            " pipeline, three at a time). Timed two ways in the same run: until each xargs"
            " returns (pachctl's stop returns before the state is paused), and until"
            " `pachctl list pipeline --raw` reports every pipeline paused (running), polled on"
            " ankus' schedule (62.5 ms doubling to 500 ms) after each xargs.",
            f"- Phases (medians): pachctl stop xargs {fmt_s(p['stop calls'])}, stop settled"
            f" {fmt_s(p['stop settled'])}; start xargs {fmt_s(p['start calls'])}, start settled"
            f" {fmt_s(p['start settled'])}. ankus `stop_all` {fmt_s(a['stop_all'])},"
            f" `start_all` {fmt_s(a['start_all'])}.",
            "- What bounds both: pachd 1.9's PPS master handles pipeline events one at a time"
            " (`src/server/pps/server/master.go`); a stopped pipeline turns `paused` only after"
            " its replication controller is scaled down (a GET and a PUT), and pachd's"
            " Kubernetes client keeps client-go's default limit of 5 requests/s (bursts of 10):"
            " ~78 s for 200 stops, whoever sends them. A started pipeline is set `running`"
            " first; that write is another event, queued behind those already waiting, whose"
            " handling scales it up (GET + PUT), so how soon the last pipeline turns `running`"
            " depends on how many scale-ups were queued before its start arrived: the faster the"
            " starts reach pachd, the sooner. Kubernetes requests per run (medians): ankus"
            f" {q['ankus']:.0f}, pachctl {q['pachctl']:.0f}; pachd was still sending them"
            f" {d['ankus']:.0f} s (ankus) and {d['pachctl']:.0f} s (pachctl) after the run"
            " ended (untimed, waited out before the next run).",
            "- Failed runs (recorded, then the pipelines a failed run left stopped are started"
            " again, untimed, and the run is repeated): "
            + ("; ".join(f"{f['tool']} in round {f['round']}: `"
                         + " ".join(f["error"].split("error:", 1)[-1].split())[:300] + "`"
                         for f in r.get("failures", [])) or "none") + ".",
            "- python-pachyderm is not run here (`benches/py/pause.py` is the sandbox peer):"
            " at 5 requests/s a run takes minutes whatever the client.",
            "",
            "| | median | runs |",
            "|---|---|---|",
        ]
        for tool in ("ankus", "pachctl+wait", "pachctl"):
            runs = " ".join(f"{x:.2f}" for x in r["times"][tool])
            label = {"pachctl": "pachctl (xargs only)", "pachctl+wait": "pachctl (until settled)"}
            details.append(f"| {label.get(tool, tool)} | {fmt_s(t[tool])} | {runs} |")
        details.append("")
    out = lines + ["", "What limits these ratios: `benches/README.md`.", ""] + details
    with open(cfg.out, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    log(f"wrote {cfg.out}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ankus", required=True)
    parser.add_argument("--python", required=True, help="the venv's python")
    parser.add_argument("--real-pachd", required=True, help="the shared peers' real-pachd script")
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--heavy", type=int, default=3, help="runs per tool of extract, restore")
    parser.add_argument("--pause-runs", type=int, default=3, help="runs per tool of pause/resume")
    parser.add_argument("--repos", type=int, default=25)
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--pipelines", dest="real_pipelines", type=int, default=200)
    parser.add_argument("--results-json", default=None)
    parser.add_argument("--from-json", default=None,
                        help="only write the report again from a finished run's --results-json")
    cfg = parser.parse_args()
    if cfg.from_json:
        with open(cfg.from_json) as f:
            results = json.load(f)
        cfg.bin = quiet([cfg.real_pachd, "build"]).stdout.strip().splitlines()[-1]
        cfg.pachctl = os.path.join(cfg.bin, "pachctl")
        finished = results.get("finished") or os.path.getmtime(cfg.from_json)
        report(cfg, results, finished)
        return
    cfg.work = os.path.abspath(os.path.join(cfg.work, "real"))
    os.makedirs(cfg.work, exist_ok=True)
    # A private copy: other builds may replace target/release/ankus during the run.
    private = os.path.join(cfg.work, "ankus")
    shutil.copy2(cfg.ankus, private)
    cfg.ankus = private
    cfg.bin = quiet([cfg.real_pachd, "build"]).stdout.strip().splitlines()[-1]
    cfg.etcd_wrapper = etcd_wrapper(cfg.work)
    cfg.pachctl = os.path.join(cfg.bin, "pachctl")
    results = {}
    started = time.perf_counter()
    log(f"real: starting the generated cluster's pachd ({cfg.repos} repos x {cfg.commits}"
        f" commits x {cfg.files} files, {cfg.real_pipelines} pipelines)")
    pachd = RealPachd(cfg, os.path.join(cfg.work, "pachd-source"))
    dump = os.path.join(cfg.work, "generated.dump")
    try:
        generate_seconds = generate(cfg, pachd, cfg.work)
        timed([cfg.pachctl, "extract"], cfg.work, env=pachd.env, stdout_path=dump)
        inv = inspect(cfg, dump)
        counted = count(cfg, pachd.address)
        results["cluster"] = {
            "data_repos": cfg.repos, "commits_per_repo": cfg.commits,
            "files_per_commit": cfg.files, "pipelines": cfg.real_pipelines,
            "generate_seconds": generate_seconds, "counted": counted,
            "dump_bytes": os.path.getsize(dump), "dump_records": inv["records"],
            "record_bytes": inv["bytes"], "kinds": inv["kinds"],
        }
        log(f"real: generated {counted}, dump {inv['records']} ops,"
            f" {os.path.getsize(dump):,} bytes")
        # pachd keeps creating the pipelines' replication controllers and services at 5
        # requests/s for minutes (5 requests each): extract and restore run meanwhile (that
        # work is a rate-limited trickle), pause waits until it is over.
        bench_extract(cfg, pachd, results)
        bench_restore(cfg, results, dump, counted)
        backlog = time.monotonic()
        wait_states(cfg, pachd, {"PIPELINE_RUNNING", "PIPELINE_STANDBY"}, timeout=900)
        wait_quiet(pachd)
        results["cluster"]["backlog_seconds"] = time.monotonic() - backlog
        results["cluster"]["create_requests"] = kube_requests(pachd)
        bench_pause(cfg, pachd, results)
    finally:
        # pachd's own errors, for a failed run (its whole log is hundreds of MB at info level).
        quiet(["bash", "-c", f"grep -aE 'ERRO|error' {pachd.directory}/pachd.log | tail -n 5000"
               f" > {cfg.work}/pachd-source-errors.log"], check=False)
        pachd.remove()
    log(f"real: done in {time.perf_counter() - started:.0f} s")
    results["finished"] = time.time()
    results["config"] = {"heavy": cfg.heavy, "pause_runs": cfg.pause_runs}
    if cfg.results_json:
        with open(cfg.results_json, "w") as f:
            json.dump(results, f, indent=1)
    report(cfg, results, results["finished"])


if __name__ == "__main__":
    # A TERM (e.g. a CI timeout) unwinds like an error, so every real pachd started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except Failed as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)
