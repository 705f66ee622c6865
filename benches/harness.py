#!/usr/bin/env python3
"""Runs the peer benchmarks for `benches/run` and writes benches/RESULTS.md.

Every figure is a ratio of medians from the same run, tools alternating (the order rotates
each round so no tool always goes first). Absolute times are printed beside the ratios only.
Not meant to be run by hand: `benches/run` builds and installs what this needs first.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, "py")


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def timed(argv, env=None, cwd=None):
    """Runs argv; returns (seconds, peak RSS in KiB, stdout). Fails loudly on a non-zero exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    # wait4 gives the child's own rusage (ru_maxrss: peak RSS in KiB on Linux); the pipes are
    # drained first so a chatty child cannot block.
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise Failed(
            f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
            f"{out.decode(errors='replace')[-2000:]}\n{err.decode(errors='replace')[-4000:]}"
        )
    return seconds, usage.ru_maxrss, out.decode(errors="replace")


def rotations(tools, runs):
    for round_index in range(runs):
        shift = round_index % len(tools)
        yield round_index, tools[shift:] + tools[:shift]


def median(values):
    return statistics.median(values)


class Sandbox:
    """`ankus sandbox` (old and new, both 1.13) in the background, in a directory of its own."""

    def __init__(self, ankus, directory, seed=None):
        self.directory = directory
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)
        argv = [ankus, "sandbox", "--dir", directory, "--old", "1.13", "--new", "1.13"]
        if seed:
            argv += ["--seed", seed]
        self.log = open(os.path.join(directory, "..", os.path.basename(directory) + ".log"), "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode(errors="replace")
        if not line.startswith("sandbox ready"):
            self.proc.kill()
            raise Failed(f"ankus sandbox did not start: {line!r} (log: {self.log.name})")
        self.env = dict(os.environ, PACH_CONFIG=os.path.join(directory, "pachctl-config.json"))

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def remove(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def write_script(work, name, body):
    path = os.path.join(work, name)
    with open(path, "w") as f:
        f.write(body + "\n")
    return path


def inspect(ankus, dump):
    _, _, out = timed([ankus, "backup", "inspect", dump, "--output", "json"])
    return json.loads(out)


def bench_extract(cfg, results):
    work = os.path.join(cfg.work, "extract")
    os.makedirs(work, exist_ok=True)
    dump = os.path.join(cfg.work, "generated.dump")
    if not os.path.exists(dump):
        log(f"generating {cfg.mib} MiB of ops")
        _, _, out = timed(cfg.peers + ["gen-dump", dump, str(cfg.mib)])
        log(f"generated: {out.strip()}")
    log("seeding the extract sandbox (restore of the generated dump into old)")
    sandbox = Sandbox(cfg.ankus, os.path.join(cfg.work, "sandbox-extract"), seed=dump)
    ankus_out = os.path.join(work, "ankus.dump")
    python_out = os.path.join(work, "python.dump")
    floor_out = os.path.join(work, "floor.dump")
    script = write_script(
        work, "extract.rhai", f'pachd::connect("old").extract(#{{ to: "{ankus_out}" }});'
    )
    times = {"ankus": [], "python-pachyderm": [], "floor": [], "floor+sha256": []}
    rss = {"ankus": [], "python-pachyderm": []}
    framing = None
    try:
        for round_index, order in rotations(["ankus", "python-pachyderm", "floor"], cfg.heavy):
            for tool in order:
                if tool == "ankus":
                    for leftover in (ankus_out, ankus_out.removesuffix(".dump") + ".manifest.json"):
                        if os.path.exists(leftover):
                            os.remove(leftover)
                    seconds, peak, _ = timed([cfg.ankus, "-q", "run", script], env=sandbox.env)
                    rss["ankus"].append(peak)
                elif tool == "python-pachyderm":
                    seconds, peak, out = timed(
                        [cfg.python, os.path.join(PY, "extract.py"), sandbox.directory, python_out]
                    )
                    framing = json.loads(out)["framing"]
                    rss["python-pachyderm"].append(peak)
                else:
                    if not os.path.exists(ankus_out):
                        continue
                    _, _, out = timed(cfg.peers + ["floor", ankus_out, floor_out])
                    floor = json.loads(out)
                    times["floor+sha256"].append(floor["hashed_seconds"])
                    seconds = floor["bare_seconds"]
                times[tool].append(seconds)
                log(f"extract round {round_index + 1} {tool}: {seconds:.2f}s")
    finally:
        sandbox.remove()
    # Both files must hold the same records in pachctl's format.
    verify = timed([cfg.ankus, "backup", "verify", python_out])
    ankus_inv, python_inv = inspect(cfg.ankus, ankus_out), inspect(cfg.ankus, python_out)
    if ankus_inv["records"] != python_inv["records"] or ankus_inv["kinds"] != python_inv["kinds"]:
        raise Failed(f"extracts differ: ankus {ankus_inv['kinds']} python {python_inv['kinds']}")
    results["extract"] = {
        "times": times,
        "rss_kib": rss,
        "records": ankus_inv["records"],
        "bytes": ankus_inv["bytes"],
        "file_bytes": os.path.getsize(ankus_out),
        "framing": framing,
        "python_verified": verify[2].strip().splitlines()[-1] if verify[2].strip() else "ok",
    }
    if os.path.exists(python_out):
        os.remove(python_out)
    return ankus_out


def bench_restore(cfg, results, dump):
    work = os.path.join(cfg.work, "restore")
    os.makedirs(work, exist_ok=True)
    script = write_script(
        work, "restore.rhai", f'pachd::connect("new").restore("{dump}", #{{ force: true }});'
    )
    times = {"ankus": [], "python-pachyderm": []}
    rss = {"ankus": [], "python-pachyderm": []}
    check = (
        "import sys, peer; c = peer.client(sys.argv[1], 'new'); "
        "print(len(c.list_repo()), len(c.list_pipeline().pipeline_info))"
    )
    inventories = set()
    for round_index, order in rotations(["ankus", "python-pachyderm"], cfg.heavy):
        for tool in order:
            # A fresh sandbox per run: restore wants an empty cluster.
            sandbox = Sandbox(cfg.ankus, os.path.join(cfg.work, "sandbox-restore"))
            try:
                if tool == "ankus":
                    seconds, peak, _ = timed([cfg.ankus, "-q", "run", script], env=sandbox.env)
                else:
                    seconds, peak, _ = timed(
                        [cfg.python, os.path.join(PY, "restore.py"), sandbox.directory, dump]
                    )
                _, _, counts = timed(
                    [cfg.python, "-c", check, sandbox.directory], env=dict(os.environ, PYTHONPATH=PY)
                )
                inventories.add((tool, counts.strip()))
            finally:
                sandbox.remove()
            times[tool].append(seconds)
            rss[tool].append(peak)
            log(f"restore round {round_index + 1} {tool}: {seconds:.2f}s")
    if len({counts for _, counts in inventories}) != 1:
        raise Failed(f"restored clusters differ (repos, pipelines): {sorted(inventories)}")
    results["restore"] = {
        "times": times,
        "rss_kib": rss,
        "restored": sorted(inventories)[0][1],
    }


def bench_pause(cfg, results):
    work = os.path.join(cfg.work, "pause")
    os.makedirs(work, exist_ok=True)
    dump = os.path.join(work, "pipelines.dump")
    timed(cfg.peers + ["gen-pipelines", dump, str(cfg.pipelines)])
    log(f"seeding the pause sandbox with {cfg.pipelines} pipelines")
    sandbox = Sandbox(cfg.ankus, os.path.join(cfg.work, "sandbox-pause"), seed=dump)
    script = write_script(
        work,
        "pause.rhai",
        'let c = pachd::connect("old");\n'
        'let paused = c.stop_all();\n'
        'let resumed = c.start_all();\n'
        'if paused.len() != resumed.len() { throw "pipelines changed"; }\n'
        'print(paused.len());',
    )
    times = {"ankus": [], "python-pachyderm": []}
    phases = []
    counts = set()
    try:
        for round_index, order in rotations(["ankus", "python-pachyderm"], cfg.heavy):
            for tool in order:
                if tool == "ankus":
                    seconds, _, out = timed([cfg.ankus, "-q", "run", script], env=sandbox.env)
                    counts.add(out.strip())
                else:
                    seconds, _, out = timed(
                        [cfg.python, os.path.join(PY, "pause.py"), sandbox.directory]
                    )
                    phase = json.loads(out)
                    phases.append(phase)
                    counts.add(str(phase["pipelines"]))
                times[tool].append(seconds)
                log(f"pause round {round_index + 1} {tool}: {seconds:.2f}s")
    finally:
        sandbox.remove()
    if counts != {str(cfg.pipelines)}:
        raise Failed(f"pause/resume saw {counts} pipelines, expected {cfg.pipelines}")
    results["pause"] = {
        "times": times,
        "python_phases": {
            key: median([p[key] for p in phases]) for key in ("pause", "resume", "total")
        },
    }


def bench_cold(cfg, results):
    work = os.path.join(cfg.work, "cold")
    os.makedirs(work, exist_ok=True)
    script = write_script(work, "one.rhai", "let x = 1;")
    times = {"ankus": [], "python-pachyderm": []}
    for _, order in rotations(["ankus", "python-pachyderm"], cfg.cold):
        for tool in order:
            if tool == "ankus":
                seconds, _, _ = timed([cfg.ankus, "run", script], cwd=work)
            else:
                seconds, _, _ = timed([cfg.python, "-c", "import python_pachyderm"], cwd=work)
            times[tool].append(seconds)
    results["cold"] = {"times": times}
    log(f"cold start: ankus {median(times['ankus']) * 1000:.1f} ms, "
        f"python {median(times['python-pachyderm']) * 1000:.1f} ms")


def command_output(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = command_output(["free", "-h"]).splitlines()
    total = memory[1].split()[1] if len(memory) > 1 else "?"
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {total} memory, Linux {platform.release()}, "
        f"{command_output(['rustc', '--version'])}"
    )


def fmt_s(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio_row(name, ankus, peer, peer_name, target, met, note=""):
    ratio = peer / ankus if ankus > 0 else float("inf")
    return (
        f"| {name} | {fmt_s(ankus)} | {fmt_s(peer)} ({peer_name}) | **{ratio:.2f}x** | "
        f"{target} | {'yes' if met(ratio) else 'no'}{note} |"
    )


def report(cfg, results, clone_md):
    def py(code):
        return command_output([cfg.python, "-c", code])

    pp_version = py('import importlib.metadata as m; print(m.version("python-pachyderm"))')
    py_version = command_output([cfg.python, "--version"])
    pb_version = py("import google.protobuf as p; print(p.__version__)")
    pb_impl = py(
        "from google.protobuf.internal import api_implementation as a; print(a.Type())")
    lines = [
        "# Benchmarks against peers",
        "",
        f"Generated by `benches/run` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}."
        " Regenerate it with `benches/run`; do not edit it by hand.",
        "",
        f"Machine: {machine()}. Shared and noisy, so every figure is a ratio of medians from"
        " this one run, tools alternating in rotating order; absolute medians stand beside them.",
        f"Tools: {command_output([cfg.ankus, '--version'])} (release build),"
        f" python-pachyderm {pp_version} on {py_version}"
        f" (protobuf {pb_version}, {pb_impl} implementation).",
        f"Repetitions: {cfg.heavy} per tool for extract, restore and pause/resume;"
        f" {cfg.cold} for cold start.",
        "",
        "Ratio = peer's median time / ankus' median time (higher = ankus faster).",
        "",
        "| benchmark | ankus | peer | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    details = []
    if "extract" in results:
        r = results["extract"]
        t = {k: median(v) for k, v in r["times"].items() if v}
        peak = max(r["rss_kib"]["ankus"]) / 1024
        lines.append(ratio_row(
            f"extract {r['bytes'] / 2**30:.2f} GiB ({r['records']} ops) to a dump",
            t["ankus"], t["python-pachyderm"], "python-pachyderm", ">= 10x, RSS <= 64 MiB",
            lambda x: x >= 10 and peak <= 64, f" (peak RSS {peak:.1f} MiB)"))
        lines.append(
            f"| extract floor: snappy framing + write + fsync, ops already in memory | "
            f"{fmt_s(t['ankus'])} | {fmt_s(t['floor'])} (floor) | {t['floor'] / t['ankus']:.2f}x"
            f" of ankus' time | - | - |")
        details += [
            "## Extract",
            "",
            f"Source: a 1.13 sandbox pachd seeded with a generated dump ({r['records']} ops,"
            f" {r['bytes'] / 2**20:.0f} MiB of records, {r['file_bytes'] / 2**20:.0f} MiB framed):"
            " incompressible 8 MiB blocks, create_object and tag ops, three repos of 200 commits,"
            " branches, three pipelines with 100 jobs each.",
            "- ankus: `ankus run` of `pachd::connect(\"old\").extract(#{ to: ... })`"
            " (atomic dump + manifest, fsync).",
            f"- python-pachyderm: `Client.extract()` writing pachctl's format with {r['framing']}"
            " framing, fsync; its gRPC receive limit raised to 64 MiB (the 4 MiB default refuses"
            " pachd's 10 MiB block chunks). Its file passes `ankus backup verify` and holds the"
            " same records per kind.",
            "- floor: the records already in memory, then only snappy framing, writing and fsync"
            " (`cargo bench --bench peers -- floor`); with ankus' sha256 for the manifest:"
            f" {fmt_s(t['floor+sha256'])}.",
            "",
            "| | median | runs | peak RSS |",
            "|---|---|---|---|",
        ]
        for tool in ("ankus", "python-pachyderm", "floor", "floor+sha256"):
            runs = " ".join(f"{x:.2f}" for x in r["times"][tool])
            rss_list = r["rss_kib"].get(tool)
            rss = f"{max(rss_list) / 1024:.1f} MiB" if rss_list else "-"
            details.append(f"| {tool} | {fmt_s(t[tool])} | {runs} | {rss} |")
        details.append("")
    if "restore" in results:
        r = results["restore"]
        t = {k: median(v) for k, v in r["times"].items()}
        peak = max(r["rss_kib"]["ankus"]) / 1024
        lines.append(ratio_row(
            "restore that dump into a fresh cluster", t["ankus"], t["python-pachyderm"],
            "python-pachyderm", ">= 10x, RSS <= 64 MiB", lambda x: x >= 10 and peak <= 64,
            f" (peak RSS {peak:.1f} MiB)"))
        details += [
            "## Restore",
            "",
            "The extract's dump into the `new` cluster of a fresh sandbox for every run.",
            "- ankus: `pachd::connect(\"new\").restore(dump, #{ force: true })`: verifies the"
            " whole dump (framing, checksums, relations, manifest) before sending anything, so it"
            " reads the file twice.",
            "- python-pachyderm: `Client.restore()` fed from the file read with python-snappy.",
            f"- Both restored clusters list the same repos and pipelines ({r['restored']}).",
            "",
            "| | median | runs | peak RSS |",
            "|---|---|---|---|",
        ]
        for tool in ("ankus", "python-pachyderm"):
            runs = " ".join(f"{x:.2f}" for x in r["times"][tool])
            details.append(
                f"| {tool} | {fmt_s(t[tool])} | {runs} | {max(r['rss_kib'][tool]) / 1024:.1f} MiB |")
        details.append("")
    if "pause" in results:
        r = results["pause"]
        t = {k: median(v) for k, v in r["times"].items()}
        p = r["python_phases"]
        lines.append(ratio_row(
            f"pause + resume {cfg.pipelines} pipelines", t["ankus"], t["python-pachyderm"],
            "list + 3 workers", ">= 10x", lambda x: x >= 10))
        details += [
            "## Pause and resume",
            "",
            f"{cfg.pipelines} pipelines in a 1.13 sandbox (a stopped pipeline turns PAUSED, a"
            " started one RUNNING, 50 ms after the call, for both tools).",
            "- ankus: one `ankus run` of `c.stop_all(); c.start_all();` (16 calls at a time,"
            " then waits until every pipeline reports paused, then running).",
            "- peer: the seed's `list pipeline | jq | xargs -P3 -n1 pachctl stop pipeline`, driven"
            " through python-pachyderm with three long-lived worker processes (xargs would start"
            " a process per pipeline), then polling ListPipeline until all are paused (running)"
            " on the same schedule ankus polls.",
            f"- peer phases (medians): pause {fmt_s(p['pause'])}, resume {fmt_s(p['resume'])}.",
            "",
            "| | median | runs |",
            "|---|---|---|",
        ]
        for tool in ("ankus", "python-pachyderm"):
            runs = " ".join(f"{x:.2f}" for x in r["times"][tool])
            details.append(f"| {tool} | {fmt_s(t[tool])} | {runs} |")
        details.append("")
    if "cold" in results:
        r = results["cold"]
        t = {k: median(v) for k, v in r["times"].items()}
        lines.append(ratio_row(
            "cold start: `ankus run` of a one-line script", t["ankus"], t["python-pachyderm"],
            "`python -c \"import python_pachyderm\"`", "ankus <= 20 ms",
            lambda _: t["ankus"] <= 0.020))
        details += [
            "## Cold start",
            "",
            f"{cfg.cold} alternating runs each; whole process lifetimes, measured from this"
            " harness (fork + exec included).",
            "",
        ]
    if clone_md:
        body = [line for line in clone_md.strip().splitlines() if not line.startswith("# ")]
        while body and not body[0].strip():
            body.pop(0)
        details += ["## Bucket clone", ""] + body + [""]
        for row in clone_md.splitlines():
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            # The main table's rows: scenario, four tools' seconds, three ratios.
            if len(cells) != 8 or not cells[0][:1].isdigit() and not cells[0].startswith("re-"):
                continue
            name, ankus_s = cells[0], float(cells[1])
            rclone_default, rclone_matched, aws = (float(cells[2]), float(cells[3]), float(cells[4]))
            best_rclone = min(rclone_default, rclone_matched)
            if name.startswith("10,000"):
                target, met = ">= 2x rclone, >= 4x aws", (
                    best_rclone / ankus_s >= 2 and aws / ankus_s >= 4)
            elif name.startswith("16 x"):
                target, met = ">= 1.2x rclone", best_rclone / ankus_s >= 1.2
            else:
                target, met = "<= 0.5x rclone's time", ankus_s <= 0.5 * best_rclone
            lines.append(
                f"| clone {name} | {fmt_s(ankus_s)} | {fmt_s(best_rclone)} (faster rclone),"
                f" {fmt_s(aws)} (aws) | **{best_rclone / ankus_s:.2f}x** rclone,"
                f" **{aws / ankus_s:.2f}x** aws | {target} | {'yes' if met else 'no'} |")
    out = lines + ["", "What limits the ratios that miss their targets: `benches/README.md`.", ""] + details
    with open(cfg.out, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    log(f"wrote {cfg.out}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ankus", required=True)
    parser.add_argument("--peers", required=True, help="the peers bench binary")
    parser.add_argument("--python", required=True, help="the venv's python")
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--heavy", type=int, default=3)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--only", default="extract,restore,pause,cold")
    parser.add_argument("--clone-md", default=None)
    parser.add_argument("--results-json", default=None)
    cfg = parser.parse_args()
    cfg.peers = [cfg.peers]
    os.makedirs(cfg.work, exist_ok=True)
    only = set(cfg.only.split(","))
    results = {}
    if cfg.results_json and os.path.exists(cfg.results_json):
        with open(cfg.results_json) as f:
            results = json.load(f)
    if "cold" in only:
        bench_cold(cfg, results)
    if "extract" in only or "restore" in only:
        dump = bench_extract(cfg, results) if "extract" in only else None
        if "restore" in only:
            bench_restore(cfg, results, dump or os.path.join(cfg.work, "extract", "ankus.dump"))
    if "pause" in only:
        bench_pause(cfg, results)
    if cfg.results_json:
        with open(cfg.results_json, "w") as f:
            json.dump(results, f, indent=1)
    clone_md = None
    if cfg.clone_md and os.path.exists(cfg.clone_md):
        with open(cfg.clone_md) as f:
            clone_md = f.read()
    report(cfg, results, clone_md)


if __name__ == "__main__":
    try:
        main()
    except Failed as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)
