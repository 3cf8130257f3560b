#!/usr/bin/env bash
# Load and fault runs of `ct3d serve` against 127.0.0.1 only, bounded in time: wrk at concurrency
# 1, 4 and 16 for DURATION seconds each over a pool of phantom scans (requests/s, p50/p95/p99
# latency, answers by status), then RSS_REQUESTS more predictions (RSS before and after: a leak
# grows it, a warm allocator does not), then a fault run: good requests under wrk while bench/serve_faults.py posts bad
# bodies, cuts uploads half-way and trickles a slow body. Needs wrk (Debian: apt-get install wrk).
#
#   bench/serve.sh                       # 60 s per concurrency, 10,000 requests for the RSS check
#   DURATION=10 RSS_REQUESTS=1000 bench/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-60}
rss_requests=${RSS_REQUESTS:-10000}
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release -q -p ct3d-cli
bin=target/release/ct3d
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GiB; $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"

# The pool: 32 phantom scans, 256×256 in-plane, 40 slices, gzip NIfTI (about 1 MiB each). The
# model: the seed CNN's layout at 64×64×48 with filters 16,16,32,64 (one epoch on 6 scans: the
# weights do not change the speed).
"$bin" synth --out "$work/pool" --normal 16 --abnormal 16 --seed 9 --size-xy 256 --depth 40 >/dev/null
"$bin" synth --out "$work/small" --normal 3 --abnormal 3 --seed 8 --size-xy 256 --depth 40 >/dev/null
"$bin" train --data "$work/small" --out "$work/run" --size 64,64,48 --filters 16,16,32,64 \
  --dense 32 --epochs 1 --seed 1 >/dev/null
ls "$work"/pool/CT-0/*.nii.gz "$work"/pool/CT-23/*.nii.gz > "$work/pool.txt"
echo "# pool: $(wc -l < "$work/pool.txt") scans, $(du -sh "$work/pool" | cut -f1); model: seed CNN layout, 64x64x48, filters 16,16,32,64"

"$bin" serve --run "$work/run" --addr 127.0.0.1:0 --workers 2 --queue 8 --request-timeout 5 \
  > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 100); do grep -q http:// "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
port=$(grep -o '127.0.0.1:[0-9]*' "$work/serve.out" | head -1 | cut -d: -f2)
url="http://127.0.0.1:$port/v1/predict"
rss() { awk '{print $2 * 4}' "/proc/$server/statm"; }   # resident KiB
# Predictions answered (200s only: a 503 costs the server almost nothing).
served() { curl -s "http://127.0.0.1:$port/metrics" | awk '/^ct3d_predict_requests_total\{status="200"\}/ {n += $2} END {print n + 0}'; }
echo "# ct3d serve --workers 2 --queue 8 --request-timeout 5 on 127.0.0.1:$port"

# Warm-up, then the RSS baseline.
POOL="$work/pool.txt" wrk -t1 -c2 -d5s -s bench/serve_pool.lua "$url" >/dev/null
rss_before=$(rss)
for c in 1 4 16; do
  echo "# wrk -t1 -c$c -d${duration}s (answers by status; 503 = queue full, by design)"
  POOL="$work/pool.txt" wrk -t1 -c"$c" -d"${duration}s" --timeout 30s -s bench/serve_pool.lua "$url" | tail -n 1
done
rss_mid=$(rss); served_mid=$(served)
while [ "$(served)" -lt "$((served_mid + rss_requests))" ]; do
  POOL="$work/pool.txt" wrk -t1 -c4 -d30s --timeout 30s -s bench/serve_pool.lua "$url" >/dev/null
done
rss_after=$(rss)
python3 -c "import json; print(json.dumps({'bench': 'serve_rss', 'rss_kib_after_warmup': $rss_before, 'predictions_then': $served_mid, 'rss_kib_then': $rss_mid, 'predictions_at_end': $(served), 'rss_kib_at_end': $rss_after}))"

echo "# fault run: wrk -c4 good requests while bad bodies, cut uploads and a slow body arrive (${duration}s)"
scan=$(head -n 1 "$work/pool.txt")
python3 bench/serve_faults.py "$port" "$scan" "$duration" > "$work/faults.json" &
faults=$!
POOL="$work/pool.txt" wrk -t1 -c4 -d"${duration}s" --timeout 30s -s bench/serve_pool.lua "$url" | tail -n 1
wait "$faults"
cat "$work/faults.json"
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && echo "# still serving after the faults"
kill -TERM "$server"; wait "$server"; echo "# SIGTERM: exit status $?"; server=""
