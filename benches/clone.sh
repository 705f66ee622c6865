#!/usr/bin/env bash
# Bucket-clone benchmark: `ankus run clone-bucket` (store sync_to) against `rclone sync` and
# `aws s3 sync`, all against one local s3s-fs on loopback, bucket to bucket on the same
# endpoint (every tool may use server-side copy).
#
# Scenarios: 10,000 x 64 KiB objects, 16 x 64 MiB objects, and a no-change re-sync of the
# 10,000. Each scenario runs RUNS times per tool, the tool order rotating every round, and
# the medians are compared as ratios (tool time / ankus time; > 1 means ankus is faster).
# rclone runs at its defaults (4 transfers, 8 checkers, 1,000 keys per list request) and at
# ankus' widths and list page size. ankus also runs
# with server-side copy switched off (`ankus-streaming`, every byte through this host), and
# its reports' "through this host" counts are recorded for both paths.
#
# Usage: benches/clone.sh [RUNS]      (default 3, LARGE_RUNS for the 64 MiB copies: at least 5;
#                                      writes $CLONE_RESULTS, default
#                                      benches/RESULTS-clone.md; benches/run folds it into
#                                      benches/RESULTS.md)
# Needs: cargo, python3, s3s-fs (.ci/install-s3s-fs.sh), rclone (Debian package), awscli
# (installed into a throwaway venv, $AWS_VENV, default /tmp/aws-venv).
set -euo pipefail

RUNS="${1:-3}"
LARGE_RUNS="${LARGE_RUNS:-$(( RUNS < 5 ? 5 : RUNS ))}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ankus-clone-bench.XXXXXX")"
AWS_VENV="${AWS_VENV:-/tmp/aws-venv}"
CLONE_RESULTS="${CLONE_RESULTS:-$REPO/benches/RESULTS-clone.md}"
ANKUS_TRANSFERS=64
ANKUS_CHECKERS=8
ANKUS_LIST_PAGE=10000 # ankus' default list_page, which rclone calls --s3-list-chunk
SMALL_COUNT=10000
LARGE_COUNT=16

missing=()
command -v python3 >/dev/null || missing+=("python3 (apt-get install -y python3 python3-venv)")
command -v cargo >/dev/null || missing+=("cargo (rustup)")
if ! command -v s3s-fs >/dev/null; then
    "$REPO/.ci/install-s3s-fs.sh" || missing+=("s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked)")
fi
if ! command -v rclone >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq rclone >/dev/null || true
    fi
    command -v rclone >/dev/null || missing+=("rclone (apt-get install -y rclone)")
fi
if [ ! -x "$AWS_VENV/bin/aws" ]; then
    { python3 -m venv "$AWS_VENV" && "$AWS_VENV/bin/pip" install -q awscli; } ||
        missing+=("awscli (python3 -m venv $AWS_VENV && $AWS_VENV/bin/pip install awscli)")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    printf 'missing: %s\n' "${missing[@]}" >&2
    exit 2
fi

(cd "$REPO" && cargo build --release --quiet)
ANKUS="$REPO/target/release/ankus"
AWS="$AWS_VENV/bin/aws"

# The server stores on this machine's disk, under $WORK, unless BENCH_S3_ROOT names another
# directory (a tmpfs such as /dev/shm, say). Nothing is deleted between the timed runs of the
# 10,000-object copy: every run copies into a bucket nobody has used, and the buckets are
# removed at the end. On ext4 without a journal (this machine's disk) the kernel will not
# reuse an inode freed in the last 60 s, or 300 s while its inode-table block is dirty, and
# scans past every such inode for each file it creates, so a copy right after a bucket was
# emptied took 2-4x as long.
# Each timed run starts after `sync`, so no tool pays for writing back the last one's data.
ROOT="$(mktemp -d "${BENCH_S3_ROOT:-$WORK}/ankus-clone-s3.XXXXXX")"
S3_FS_TYPE="$(df -PT "$ROOT" | awk 'NR==2 {print $2}')"
# Every small-object run keeps its copy (64 KiB + ~8 KiB of side files per object) until the
# end; sources, the seeding files and one large copy at a time besides.
NEED_KIB=$(( (RUNS * 5 + 2) * SMALL_COUNT * 72 + 3 * LARGE_COUNT * 65536 + 1048576 ))
FREE_KIB="$(df -Pk "$ROOT" | awk 'NR==2 {print $4}')"
if [ "$FREE_KIB" -lt "$NEED_KIB" ]; then
    echo "clone.sh: $ROOT has $(( FREE_KIB / 1048576 )) GiB free, $RUNS rounds need $(( NEED_KIB / 1048576 + 1 )) GiB (fewer rounds, or BENCH_S3_ROOT)" >&2
    exit 2
fi
mkdir -p "$ROOT/small-src" "$ROOT/large-src" "$WORK/run"
SERVER_LOG="$WORK/s3s-fs.log"
RUST_LOG=s3s_fs=info s3s-fs --host 127.0.0.1 --port 0 --access-key bench-key --secret-key bench-secret "$ROOT" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
cleanup() { kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK" "$ROOT"; }
trap cleanup EXIT
for _ in $(seq 1 300); do
    ENDPOINT="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$SERVER_LOG" | head -1 || true)"
    [ -n "$ENDPOINT" ] && break
    sleep 0.1
done
[ -n "${ENDPOINT:-}" ] || { echo "s3s-fs did not start; log:" >&2; cat "$SERVER_LOG" >&2; exit 1; }

# Only this benchmark's settings: a CA bundle or profile from the environment would change
# how the tools connect (rclone refuses custom CA bundles on plain HTTP).
for name in $(env | grep -o '^AWS_[A-Z_]*' || true); do unset "$name"; done
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="$ENDPOINT" AWS_DEFAULT_REGION=us-east-1
export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=bench-key RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=bench-secret
export RCLONE_CONFIG_BENCH_ENDPOINT="$ENDPOINT" RCLONE_CONFIG_BENCH_REGION=us-east-1
export RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true

# Source data goes in through rclone, so objects carry MD5 ETags and rclone's mtime metadata
# (rclone's re-sync then finds equal modification times, as after a real clone).
echo "seeding: $SMALL_COUNT x 64 KiB and $LARGE_COUNT x 64 MiB" >&2
python3 - "$WORK/local-small" "$WORK/local-large" "$SMALL_COUNT" "$LARGE_COUNT" <<'PY'
import os, sys
small, large, small_count, large_count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for directory in (small, large):
    os.makedirs(directory, exist_ok=True)
for index in range(small_count):
    with open(os.path.join(small, f"obj-{index:05d}"), "wb") as f:
        f.write(os.urandom(64 << 10))
for index in range(large_count):
    with open(os.path.join(large, f"big-{index:02d}"), "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
PY
rclone copy "$WORK/local-small" bench:small-src --transfers 32 --checkers 16
rclone copy "$WORK/local-large" bench:large-src --transfers 8
rm -rf "$WORK/local-large" # 16 files; the 10,000 local ones stay until the end (see above)

TOOLS=(ankus ankus-streaming rclone-default rclone-matched aws)
cd "$WORK/run"
# The streaming variant: the same sync_to as the bundled clone-bucket script, server-side
# copy off.
cat >"$WORK/streaming.rhai" <<'RHAI'
let report = store::open(arg("src")).sync_to(arg("dst"), #{
    transfers: arg("transfers", 64), checkers: arg("checkers", 8), server_side: false });
print(report.to_string());
if report.failed > 0 { throw "copy failed"; }
RHAI
declare -A HOST

# Runs one tool's sync of bucket $1 into bucket $2; prints seconds.
run_tool() {
    local tool="$1" src="$2" dst="$3" start end
    start="$(date +%s.%N)"
    case "$tool" in
        ankus) "$ANKUS" -q run clone-bucket -a "src=s3://$src" -a "dst=s3://$dst" \
            -a "transfers=$ANKUS_TRANSFERS" -a "checkers=$ANKUS_CHECKERS" >"$WORK/run/out" 2>&1 ;;
        ankus-streaming) "$ANKUS" -q run "$WORK/streaming.rhai" -a "src=s3://$src" -a "dst=s3://$dst" \
            -a "transfers=$ANKUS_TRANSFERS" -a "checkers=$ANKUS_CHECKERS" >"$WORK/run/out" 2>&1 ;;
        rclone-default) rclone sync "bench:$src" "bench:$dst" >"$WORK/run/out" 2>&1 ;;
        rclone-matched) rclone sync "bench:$src" "bench:$dst" --transfers "$ANKUS_TRANSFERS" \
            --checkers "$ANKUS_CHECKERS" --s3-list-chunk "$ANKUS_LIST_PAGE" >"$WORK/run/out" 2>&1 ;;
        aws) "$AWS" s3 sync "s3://$src" "s3://$dst" --only-show-errors >"$WORK/run/out" 2>&1 ;;
    esac || { echo "$tool failed:" >&2; cat "$WORK/run/out" >&2; exit 1; }
    end="$(date +%s.%N)"
    python3 -c "print(f'{$end - $start:.3f}')"
}

# What the last ankus run's report says passed through this host ("-" for other tools).
host_bytes() {
    case "$1" in
        ankus*) grep -o '[0-9.]* [KMGT]*i*B through this host' "$WORK/run/out" | head -1 |
            sed 's/ through this host//' ;;
        *) echo "-" ;;
    esac
}

# Runs one timed sync into bucket $2, made if new ($1: tool, $3: source, $4: scenario); records it.
timed() {
    local tool="$1" dst="$2" src="$3" scenario="$4" seconds
    mkdir -p "$ROOT/$dst"
    sync
    seconds="$(run_tool "$tool" "$src" "$dst")"
    TIMES[$scenario,$tool]+="$seconds "
}

# Deletes a bucket: its directory and s3s-fs' metadata files (named after the bucket in
# unpadded URL-safe base64) beside it.
remove_bucket() {
    local encoded
    encoded="$(printf %s "$1" | base64 -w0 | tr -d '=' | tr '/+' '_-')"
    rm -rf "${ROOT:?}/$1"
    find "$ROOT" -maxdepth 1 -name ".bucket-$encoded.*" -delete
}

check_count() {
    local bucket="$1" want="$2" got
    got="$(find "$ROOT/$bucket" -type f | wc -l)"
    [ "$got" = "$want" ] || { echo "$bucket holds $got objects, expected $want" >&2; exit 1; }
}

declare -A TIMES
# Rotates the order every round, so no tool always runs first (cold caches) or last.
round_order() {
    local i
    for i in "${!TOOLS[@]}"; do echo "${TOOLS[$(( (i + $1 - 1) % ${#TOOLS[@]} ))]}"; done
}
# The 10,000-object copy and its re-sync, every round, then the large copies (which delete
# only a bucket of 16 objects before the next).
for round in $(seq 1 "$RUNS"); do
    for tool in $(round_order "$round"); do
        dst="small-$round-$tool"
        timed "$tool" "$dst" small-src small; check_count "$dst" "$SMALL_COUNT"
        HOST[small,$tool]="$(host_bytes "$tool")"
        timed "$tool" "$dst" small-src resync
        echo "round $round $tool: small and re-sync done" >&2
    done
done
# The first large copy after the small-object phase (ankus' in two runs: 1.5 and 1.7 s where
# its others took 0.2-0.3 s) was the slow one: an untimed copy with cp goes first, with the
# source read into the page cache, so no tool's timed run is the first.
cat "$ROOT"/large-src/* >/dev/null
cp -r "$ROOT/large-src" "$ROOT/warm-up" && rm -rf "$ROOT/warm-up" && sync
# Each large copy is a fraction of a second of server work on an idle machine, so it gets
# more rounds than the rest.
for round in $(seq 1 "$LARGE_RUNS"); do
    for tool in $(round_order "$round"); do
        dst="large-$round-$tool"
        timed "$tool" "$dst" large-src large; check_count "$dst" "$LARGE_COUNT"
        HOST[large,$tool]="$(host_bytes "$tool")"
        remove_bucket "$dst"
        echo "round $round $tool: large done" >&2
    done
done

{
    echo "# Bucket clone benchmark"
    echo
    echo "Generated by \`benches/clone.sh $RUNS\` on $(date -u +%Y-%m-%dT%H:%M:%SZ)."
    echo
    echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), memory: $(free -h | awk '/^Mem:/ {print $2 " total, " $7 " available"}')."
    echo "Server: s3s-fs $(s3s-fs --version | awk '{print $2}') on 127.0.0.1 storing on $S3_FS_TYPE (every run into a new bucket, nothing deleted between the small-object runs, \`sync\` before each), one bucket to another on the same endpoint."
    echo "Tools: ankus $("$ANKUS" --version | awk '{print $2}') (transfers $ANKUS_TRANSFERS, checkers $ANKUS_CHECKERS, list pages of $ANKUS_LIST_PAGE keys), $(rclone version | head -1), $("$AWS" --version 2>&1 | cut -d' ' -f1)."
    echo "Data: $SMALL_COUNT x 64 KiB objects, $LARGE_COUNT x 64 MiB objects (uploaded with rclone). Median of $RUNS alternating runs ($LARGE_RUNS for the 64 MiB copies, after an untimed warm-up copy with cp)."
    echo
    echo "| scenario | ankus s | rclone (defaults) s | rclone (matched widths, list chunk) s | aws s3 sync s | vs rclone defaults | vs rclone matched | vs aws |"
    echo "|---|---|---|---|---|---|---|---|"
    for scenario in small large resync; do
        python3 - "$scenario" "${TIMES[$scenario,ankus]}" "${TIMES[$scenario,rclone-default]}" "${TIMES[$scenario,rclone-matched]}" "${TIMES[$scenario,aws]}" <<'PY'
import statistics, sys
name = {"small": "10,000 x 64 KiB", "large": "16 x 64 MiB", "resync": "re-sync 10,000 (no change)"}[sys.argv[1]]
medians = [statistics.median(float(t) for t in column.split()) for column in sys.argv[2:]]
ankus = medians[0]
ratios = [f"{m / ankus:.2f}x" for m in medians[1:]]
print(f"| {name} | " + " | ".join(f"{m:.2f}" for m in medians) + " | " + " | ".join(ratios) + " |")
PY
    done
    echo
    echo "Ratios are the other tool's median time divided by ankus' (higher = ankus faster)."
    echo
    echo "Server-side copy against streaming (ankus alone; \"through host\" is the object data its report says passed through this machine, last run):"
    echo
    echo "| scenario | server-side copy s | through host | streaming s | through host | streaming / server-side |"
    echo "|---|---|---|---|---|---|"
    for scenario in small large; do
        python3 - "$scenario" "${TIMES[$scenario,ankus]}" "${HOST[$scenario,ankus]}" "${TIMES[$scenario,ankus-streaming]}" "${HOST[$scenario,ankus-streaming]}" <<'PY'
import statistics, sys
name = {"small": "10,000 x 64 KiB", "large": "16 x 64 MiB"}[sys.argv[1]]
server, streaming = (statistics.median(float(t) for t in sys.argv[i].split()) for i in (2, 4))
print(f"| {name} | {server:.2f} | {sys.argv[3]} | {streaming:.2f} | {sys.argv[5]} | {streaming / server:.2f}x |")
PY
    done
    echo
    echo "Targets (issue 6): >= 2x rclone and >= 4x aws on small objects, >= 1.2x rclone on large ones, re-sync in <= half rclone's time."
    echo
    echo "Raw seconds per run:"
    echo
    for scenario in small large resync; do
        for tool in "${TOOLS[@]}"; do echo "- $scenario / $tool: ${TIMES[$scenario,$tool]}"; done
    done
} >"$CLONE_RESULTS"
cat "$CLONE_RESULTS"
