#!/usr/bin/env bash
# Installs what ferry's demo and tests need on a fresh Debian machine: the real registry
# (Debian's docker-registry, distribution 2.8), skopeo for byte-exact verification, and
# openssl for the test PKI. Idempotent; quiet when everything is already there.
set -euo pipefail

need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
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
