#!/usr/bin/env bash
# Cost of many idle streams: N containers with 10 lines each; after everything is delivered,
# the collector's CPU seconds over 10 s of idling (periodic scans, polls, no new data), and its
# peak RSS.   usage: benches/idle_streams.sh [STREAMS]
set -euo pipefail
N=${1:-5000}
BIN=${NEVERMORE_BIN:-target/release/nevermore}
DIR=$(mktemp -d "${BENCH_TMP:-/dev/shm}/nevermore-idle.XXXXXX")
trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
python3 - "$DIR" "$N" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for s in range(n):
    c = f"{d}/pods/idle_pod-{s}_uid-{s:06d}/app"
    os.makedirs(c)
    with open(f"{c}/0.log", "w") as f:
        for i in range(10):
            f.write(f"2026-11-26T10:00:00.{i:09d}Z stdout F idle line {i}\n")
PY
cat > "$DIR/config.yaml" <<YAML
node_name: bench
cluster: bench
data_dir: $DIR/data
telemetry: {listen: "off"}
sources:
  pods: {type: kubernetes_logs, pods_dir: $DIR/pods}
sinks:
  out: {type: file, path: $DIR/out.ndjson}
YAML
"$BIN" collect --config "$DIR/config.yaml" 2>"$DIR/log" &
PID=$!
while [ "$( [ -f "$DIR/out.ndjson" ] && wc -l < "$DIR/out.ndjson" || echo 0)" -lt $((N * 10)) ]; do sleep 0.2; done
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$PID/stat; }
A=$(cpu); sleep 10; B=$(cpu)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
FDS=$(ls /proc/$PID/fd | wc -l)
python3 -c "print(f'streams=$N idle_cpu_s_per_10s={($B - $A) / $TCK:.2f} open_fds=$FDS peak_rss_mib={$HWM / 1024:.1f}')"
