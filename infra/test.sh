#!/usr/bin/env bash
# Runs every check and test: formatting, clippy, the SAM template's linters, the Lambda
# functions' arm64 build, and the unit and integration tests (which start real
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
# The functions cross-compiled and linked for Lambda's arm64, as `sam build` does it. In the
# debug profile: the same compile and link, without the optimiser's minutes.
cargo lambda build --arm64 --package planner --package copier --package webhook
# The ferry binary the integration tests run, built first: `cargo test` builds only the
# binary's test harness. With it in place the tests need not run `cargo build` themselves,
# which would wait on the target directory's lock while the Lambda emulator test compiles
# the functions.
cargo build --workspace --bins
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
FERRY_TEST_NO_BUILD=1 cargo test --workspace --all-targets 2>&1 | tee "$log"
# The release binaries' smoke tests (tests/it/release.rs, ignored above): minutes, since
# infra/release.sh cross-builds five targets first; only with FERRY_RELEASE_TESTS=1.
if [ "${FERRY_RELEASE_TESTS:-}" = 1 ]; then
  # Debian's wine64 puts its loader in /usr/lib/wine (the `wine` package adds /usr/bin/wine).
  if ! command -v wine64 >/dev/null 2>&1 && ! command -v wine >/dev/null 2>&1 \
    && [ ! -x /usr/lib/wine/wine64 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing: wine64"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends wine64 >/dev/null
  fi
  ./infra/release.sh
  FERRY_TEST_NO_BUILD=1 cargo test -p ferry-tests --test it -- --ignored release:: 2>&1 | tee -a "$log"
else
  echo "release smoke tests skipped (ignored): FERRY_RELEASE_TESTS=1 ./infra/test.sh runs them"
fi
# cargo prints a result per test binary (the last is often one without tests): one line
# for the whole suite.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 } END { printf "tests: %d passed, %d failed, %d ignored\n", passed, failed, ignored }' "$log"
