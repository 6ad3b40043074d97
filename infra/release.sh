#!/usr/bin/env bash
# Builds the `ferry` release binaries from this Linux machine into dist/: static Linux (musl)
# for x86_64 and aarch64, Windows x86_64 (MinGW), macOS arm64 and x86_64, each as
# dist/ferry-<target> (.exe on Windows), and dist/SHA256SUMS. Installs what it needs: the
# Rust targets (rustup), cargo-zigbuild and ziglang (PyPI, into <repo>/.venv, as setup.sh
# does) for the musl and macOS links, and Debian's mingw-w64 for Windows.
#
# Every binary trusts Mozilla's roots compiled in plus SSL_CERT_FILE (ferry-cli's feature
# `bundled-roots`): the macOS keychain would need Apple's SDK to link, and a static Linux
# binary may run where no certificate store exists. See README "Install".
#
# Usage: infra/release.sh [TARGET...]   (default: all five)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

all_targets=(
  x86_64-unknown-linux-musl
  aarch64-unknown-linux-musl
  x86_64-pc-windows-gnu
  aarch64-apple-darwin
  x86_64-apple-darwin
)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi
for target in "${targets[@]}"; do
  case " ${all_targets[*]} " in
    *" $target "*) ;;
    *) echo "release: unknown target $target (one of: ${all_targets[*]})" >&2; exit 2 ;;
  esac
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
  echo "installing: $*"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Rust targets.
installed="$(rustup target list --installed)"
for target in "${targets[@]}"; do
  grep -qx "$target" <<<"$installed" || rustup target add "$target"
done

# zig as the C compiler and linker for musl and macOS (ring has C and assembly).
venv="$repo/.venv"
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then apt_install python3-venv; fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
py_need=()
[ -x "$venv/bin/cargo-zigbuild" ] || py_need+=(cargo-zigbuild)
"$venv/bin/python" -c 'import ziglang' >/dev/null 2>&1 || py_need+=(ziglang)
if [ ${#py_need[@]} -gt 0 ]; then
  echo "installing into .venv: ${py_need[*]}"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${py_need[@]}"
fi
# cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH: the venv's python.
export PATH="$venv/bin:$PATH"

# MinGW for Windows: Rust's default linker for x86_64-pc-windows-gnu.
if [[ " ${targets[*]} " == *" x86_64-pc-windows-gnu "* ]] \
  && ! command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1; then
  apt_install mingw-w64
fi

# The commit for `ferry --version` (cli/build.rs reads it, else asks git itself).
if [ -z "${FERRY_COMMIT:-}" ]; then
  FERRY_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
fi
export FERRY_COMMIT

target_dir="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
build_flags=(--release --locked -p ferry-cli --bin ferry --no-default-features --features bundled-roots)

mkdir -p dist
for target in "${targets[@]}"; do
  echo "== $target"
  exe=""
  case "$target" in
    *-windows-*)
      exe=".exe"
      # Static C runtime: no MinGW DLL (libwinpthread, libgcc) beside the .exe.
      CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build "${build_flags[@]}" --target "$target"
      ;;
    *)
      cargo zigbuild "${build_flags[@]}" --target "$target"
      ;;
  esac
  cp "$target_dir/$target/release/ferry$exe" "dist/ferry-$target$exe"
done

# Checksums of every binary in dist/ (an earlier run's other targets included).
(cd dist && sha256sum ferry-* > SHA256SUMS)
echo "== dist/"
ls -l dist
