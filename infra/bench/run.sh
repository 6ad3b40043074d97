#!/usr/bin/env bash
# The benchmark, end to end on this machine: installs what it needs (docker-registry,
# skopeo, openssl, GNU time), builds ferry and the benchmark in release mode, starts two
# local TLS registries, seeds the corpora and measures ferry against `skopeo sync --all` and
# a raw copy floor. Prints the table; writes infra/bench/results/latest.{json,md}.
# Arguments go to ferry-bench: --runs N (default 3), --quick (small corpus, smoke test),
# --only cold,warm,warm-immutable,warm-no-referrers,three-targets,big,calibrate,planner,
# --tools ferry,skopeo,floor,floor-h2, --auth basic|token, --proc N, --out DIR, --keep,
# --ferry BIN (measure that ferry binary instead of building one).
set -euo pipefail
cd "$(dirname "$0")/../.."
export FERRY_BENCH_COMMAND="infra/bench/run.sh${*:+ $*}"

bash infra/setup.sh
# A target directory of its own, so it does not wait on (or invalidate) other builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target-bench}"
ferry=(--ferry "$CARGO_TARGET_DIR/release/ferry")
for arg in "$@"; do
  case "$arg" in --ferry | --ferry=*) ferry=() ;; esac
done
[ ${#ferry[@]} -eq 0 ] || cargo build -q --release -p ferry-cli --bin ferry
cargo build -q --release -p ferry-bench
exec "$CARGO_TARGET_DIR/release/ferry-bench" "${ferry[@]}" "$@"
