#!/usr/bin/env bash
# Installs what ferry's demo and tests need on a fresh Debian machine: the real registry
# (Debian's docker-registry, distribution 2.8), skopeo for byte-exact verification, and
# openssl for the test PKI. Idempotent; quiet when everything is already there.
set -euo pipefail

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/bin/time ] || need+=(time)  # GNU time: peak RSS in infra/bench
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The package may start a system registry on :5000; ferry's tests use their own ports.
command -v docker-registry >/dev/null
command -v skopeo >/dev/null

# Python tools for ferry's serverless mode, in <repo>/.venv so nothing touches the system
# Python: moto_server (a local SQS for the queue tests), cfn-lint (template checks),
# cargo-lambda (Lambda builds), the SAM CLI and the oras SDK (the referrers tests' client).
# Each is installed only when missing, so a second run contacts no registry.
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.venv"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: python3-venv"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
py_need=()
[ -x "$venv/bin/moto_server" ] || py_need+=("moto[server]")
[ -x "$venv/bin/cfn-lint" ] || py_need+=(cfn-lint)
[ -x "$venv/bin/cargo-lambda" ] || py_need+=(cargo-lambda)
[ -x "$venv/bin/sam" ] || py_need+=(aws-sam-cli)
"$venv/bin/python" -c 'import oras' >/dev/null 2>&1 || py_need+=(oras)
if [ ${#py_need[@]} -gt 0 ]; then
  echo "installing into .venv: ${py_need[*]}"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${py_need[@]}"
fi
for tool in moto_server cfn-lint cargo-lambda sam; do
  [ -x "$venv/bin/$tool" ] || { echo "setup: $venv/bin/$tool is missing" >&2; exit 1; }
done
