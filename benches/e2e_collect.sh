#!/usr/bin/env bash
# End-to-end throughput of `nevermore collect` to a file sink: one container writing N CRI lines of
# ~200 bytes (default 2,000,000). Prints lines/s, MB/s of CRI input, CPU seconds, MB per
# CPU-second and peak RSS of the collector process.
#   usage: benches/e2e_collect.sh [LINES] [STREAMS]
set -euo pipefail
LINES=${1:-2000000}
STREAMS=${2:-1}
BIN=${NEVERMORE_BIN:-target/release/nevermore}
# Memory-backed by default: on this VM, page-cache writes to the root disk cost ~2.5 CPU-s per GB
# (dd shows it), which would measure the disk, not the collector. BENCH_TMP=/tmp to include it.
DIR=$(mktemp -d "${BENCH_TMP:-/dev/shm}/nevermore-bench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
python3 - "$DIR" "$LINES" "$STREAMS" <<'PY'
import os, sys
d, n, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
per = n // streams
pad = "x" * 120
for s in range(streams):
    cdir = f"{d}/pods/bench_pod-{s}_uid-{s:06d}/app"
    os.makedirs(cdir, exist_ok=True)
    with open(f"{cdir}/0.log", "w") as f:
        for i in range(per):
            f.write(f"2026-11-26T10:00:00.{i % 1000000000:09d}Z stdout F level=info seq={i:09d} {pad}\n")
PY
INPUT_BYTES=$(du -cb "$DIR"/pods/*/*/0.log | tail -1 | cut -f1)
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
START=$(date +%s.%N)
"$BIN" collect --config "$DIR/config.yaml" 2>"$DIR/log" &
PID=$!
TOTAL=$((LINES / STREAMS * STREAMS))
PER=$((LINES / STREAMS))
# Done when every stream's last record (sequence PER-1) is in the output. Only the file's tail is
# read, so polling costs nothing next to the collector.
LAST="\"sequence\":$((PER - 1)),"
while :; do
  if [ -f "$DIR/out.ndjson" ] && [ "$(tail -c $((4096 * STREAMS)) "$DIR/out.ndjson" | grep -c "$LAST")" -ge 1 ]; then
    if [ "$STREAMS" -eq 1 ] || [ "$(grep -c "$LAST" "$DIR/out.ndjson")" -ge "$STREAMS" ]; then break; fi
  fi
  kill -0 $PID 2>/dev/null || { echo "collector exited early"; cat "$DIR/log"; exit 1; }
  sleep 0.05
done
END=$(date +%s.%N)
read -r UT ST < <(awk '{print $14, $15}' /proc/$PID/stat)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
kill -TERM $PID; wait $PID || true
GOT=$(wc -l < "$DIR/out.ndjson")
[ "$GOT" -eq "$TOTAL" ] || { echo "delivered $GOT records, expected $TOTAL"; exit 1; }
TCK=$(getconf CLK_TCK)
python3 - <<PY
wall = $END - $START
cpu = ($UT + $ST) / $TCK
mb = $INPUT_BYTES / 1e6
print(f"user_s={$UT/$TCK:.2f} sys_s={$ST/$TCK:.2f} ", end=""); print(f"lines={$TOTAL} streams={$STREAMS} input_mb={mb:.1f} wall_s={wall:.2f} lines_per_s={$TOTAL/wall:,.0f} "
      f"mb_per_s={mb/wall:.1f} cpu_s={cpu:.2f} mb_per_cpu_s={mb/cpu:.1f} peak_rss_mib={$HWM/1024:.1f}")
PY
