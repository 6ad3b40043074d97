#!/usr/bin/env bash
# The main job end to end on this machine: installs what it needs, starts two local
# registries, seeds a multi-arch sample image, and runs ferry on image-syncer style files.
set -euo pipefail
cd "$(dirname "$0")/.."

bash infra/setup.sh
cargo build -q -p ferry-cli --bin ferry
cargo run -q -p ferry-examples --bin demo
