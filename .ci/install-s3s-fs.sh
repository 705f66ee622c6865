#!/usr/bin/env bash
# Installs s3s-fs (the S3-compatible server the store tests start on loopback) unless it is
# already on PATH. 0.14.1 is the newest release that builds with our compiler.
set -euo pipefail
if command -v s3s-fs >/dev/null 2>&1; then
    echo "s3s-fs: $(command -v s3s-fs)"
    exit 0
fi
# A separate target dir keeps the install from touching the workspace's build cache.
CARGO_TARGET_DIR="${S3S_FS_TARGET_DIR:-${TMPDIR:-/tmp}/s3s-fs-build}" \
    cargo install s3s-fs@0.14.1 --features binary --locked
command -v s3s-fs >/dev/null 2>&1 || {
    echo "s3s-fs was installed but is not on PATH; add ~/.cargo/bin to PATH" >&2
    exit 1
}
