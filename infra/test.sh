#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, the SAM template's linters, the Lambda
# functions' release build, and the unit and integration tests (which start real
# docker-registry processes and moto on loopback ports). Installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash infra/setup.sh
# cargo-lambda, cfn-lint, sam and moto_server live in the project's venv.
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cfn-lint template.yaml
AWS_DEFAULT_REGION=us-east-1 sam validate --lint --template template.yaml
# What `sam build` does for each function: a release build for Lambda's arm64.
cargo lambda build --release --arm64 --package planner --package copier --package webhook
cargo test --workspace --all-targets
