#!/usr/bin/env bash
# The benchmark, end to end on this machine: installs what it needs (docker-registry,
# skopeo, openssl, GNU time), builds ferry and the benchmark in release mode, starts two
# local TLS registries, seeds the corpora and measures ferry against `skopeo sync --all` and
# a raw copy floor. Prints the table; writes infra/bench/results/latest.{json,md}.
# Arguments go to ferry-bench: --runs N (default 3), --quick (small corpus, smoke test),
# --only cold,warm,big,calibrate, --auth basic|token, --proc N, --out DIR, --keep.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash infra/setup.sh
# A target directory of its own, so it does not wait on (or invalidate) other builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
cargo build -q --release -p ferry-cli --bin ferry
cargo build -q --release -p ferry-bench
exec "$CARGO_TARGET_DIR/release/ferry-bench" --ferry "$CARGO_TARGET_DIR/release/ferry" "$@"
