#!/usr/bin/env bash
# The planner at scale: one repository with N tags (default 10,000) in a local registry, a
# local SQS (moto), and `ferry plan --queue-url`, which runs the planner Lambda's code: list
# the tags, HEAD every source and target, enqueue one job per image not in sync. Prints the
# wall time of a cold plan (every tag enqueued) and of a warm one (all in sync, nothing sent).
#
#   infra/bench/planner.sh [TAGS]
set -euo pipefail
cd "$(dirname "$0")/../.."
tags="${1:-10000}"

bash infra/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
cargo build --release -p ferry-cli --quiet
ferry="$PWD/target/release/ferry"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_registry() { # name port
  mkdir -p "$work/$1"
  cat >"$work/$1/config.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/$1/data}}
http: {addr: 127.0.0.1:$2}
EOF
  docker-registry serve "$work/$1/config.yml" >"$work/$1/log" 2>&1 &
  pids+=($!)
}

wait_for() { # url
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for $1" >&2; exit 1
}

src_port=$(free_port); dst_port=$(free_port); sqs_port=$(free_port)
start_registry src "$src_port"
start_registry dst "$dst_port"
moto_server -H 127.0.0.1 -p "$sqs_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$src_port/v2/"
wait_for "http://127.0.0.1:$dst_port/v2/"
wait_for "http://127.0.0.1:$sqs_port/"

# One small image, tagged N times: the planner's cost is per tag, not per byte.
src="http://127.0.0.1:$src_port/v2/bench/app"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config.json"
config_digest="sha256:$(sha256sum "$work/config.json" | cut -d' ' -f1)"
location=$(curl -sfi -X POST "$src/blobs/uploads/" | tr -d '\r' | awk 'tolower($1)=="location:" {print $2}')
case "$location" in http*) ;; *) location="http://127.0.0.1:$src_port$location" ;; esac
curl -sf -X PUT -H 'Content-Type: application/octet-stream' --data-binary @"$work/config.json" \
  "$location&digest=$config_digest" >/dev/null
size=$(stat -c %s "$work/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[]}' \
  "$config_digest" "$size" >"$work/manifest.json"
echo "seeding $tags tags..."
seq 1 "$tags" | xargs -P 8 -I{} curl -sf -X PUT \
  -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary @"$work/manifest.json" "$src/manifests/t{}" -o /dev/null

export AWS_ENDPOINT_URL_SQS="http://127.0.0.1:$sqs_port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
# boto3 comes with moto in the venv.
queue_url=$(.venv/bin/python -c 'import boto3, sys
sqs = boto3.client("sqs", endpoint_url=sys.argv[1], region_name="us-east-1")
print(sqs.create_queue(QueueName="ferry-bench")["QueueUrl"])' "$AWS_ENDPOINT_URL_SQS")
printf '127.0.0.1:%s: {insecure: true}\n127.0.0.1:%s: {insecure: true}\n' "$src_port" "$dst_port" >"$work/auth.yaml"
printf '127.0.0.1:%s/bench/app: 127.0.0.1:%s/mirror/app\n' "$src_port" "$dst_port" >"$work/images.yaml"

plan() {
  local start end
  start=$(date +%s.%N)
  "$ferry" plan --auth="$work/auth.yaml" --images="$work/images.yaml" --queue-url="$queue_url" >"$work/summary.json"
  end=$(date +%s.%N)
  python3 -c "import json,sys; s=json.load(open('$work/summary.json')); print(f\"{sys.argv[1]}: {float(sys.argv[3])-float(sys.argv[2]):.1f} s, tags_seen={s['tags_seen']} jobs_enqueued={s['jobs_enqueued']} already_in_sync={s['already_in_sync']} errors={len(s['errors'])}\")" "$1" "$start" "$end"
}
plan "cold plan, $tags tags (all enqueued)"
# Bring the target in sync (copy one image, then tag it like the source), and plan again.
"$ferry" --auth="$work/auth.yaml" --images="$work/images.yaml" --proc=8 >/dev/null 2>&1 || true
plan "warm plan, $tags tags (all in sync)"
