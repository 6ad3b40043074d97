#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, and the unit and integration tests
# (which start real docker-registry processes on loopback ports). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash infra/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace
