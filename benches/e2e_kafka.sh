#!/usr/bin/env bash
# End-to-end throughput through Kafka: `nevermore collect` → kafka sink, then `nevermore relay`
# → Elasticsearch, on the workload of benches/e2e_collect.sh (one container, N CRI lines of ~186
# bytes). Each stage runs alone and is timed until its last record is acknowledged (the
# collector's `nevermore_sink_records_acked`, the relay's `nevermore_relay_records_written`).
# A third stage relays the same topic into the embedded index (the relay without a remote
# server's indexing cost). Prints lines/s, MB/s of CRI input, CPU seconds, CPU seconds per GB
# and peak RSS per stage.
#
#   usage: benches/e2e_kafka.sh [LINES] [BROKER] [ES_URL]
#   default broker: the first of NEVERMORE_KAFKA_BROKERS (noida-db); default ES: the last of
#   NEVERMORE_ES_URLS (osmem: noida-db indexes 1-3k new documents/s here, which would measure
#   noida). `.ci/services start`, then `source /tmp/nevermore-services/env`.
set -euo pipefail
LINES=${1:-1000000}
BROKER=${2:-${NEVERMORE_KAFKA_BROKERS%%,*}}
ES=${3:-${NEVERMORE_ES_URLS##*,}}
[ -n "$BROKER" ] || { echo "no broker: pass one or source the services env file"; exit 1; }
BIN=${NEVERMORE_BIN:-target/release/nevermore}
COMPRESSION=${COMPRESSION:-lz4}
DIR=$(mktemp -d "${BENCH_TMP:-/dev/shm}/nevermore-bench.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
python3 - "$DIR" "$LINES" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
pad = "x" * 120
cdir = f"{d}/pods/bench_pod-0_uid-000000/app"
os.makedirs(cdir, exist_ok=True)
with open(f"{cdir}/0.log", "w") as f:
    for i in range(n):
        f.write(f"2026-11-26T10:00:00.{i % 1000000000:09d}Z stdout F level=info seq={i:09d} {pad}\n")
PY
INPUT_BYTES=$(stat -c %s "$DIR"/pods/*/*/0.log)
TOPIC="bench-$$-$(date +%s)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
C_PORT=$(free_port)
R_PORT=$(free_port)
cat > "$DIR/config.yaml" <<YAML
node_name: bench
cluster: bench
data_dir: $DIR/data
telemetry: {listen: "127.0.0.1:$C_PORT"}
sources:
  pods: {type: kubernetes_logs, pods_dir: $DIR/pods}
sinks:
  bus: {type: kafka, bootstrap_servers: "$BROKER", topic: $TOPIC, compression: $COMPRESSION, linger_ms: 20}
YAML
cat > "$DIR/relay.yaml" <<YAML
node_name: bench
data_dir: $DIR/relay-data
telemetry: {listen: "127.0.0.1:$R_PORT"}
sinks:
  es: {type: elasticsearch, endpoints: ["$ES"], index: "logs-nevermore-$TOPIC", batch_max_records: 5000}
relay:
  kafka: {bootstrap_servers: "$BROKER", topics: [$TOPIC], group_id: bench-$TOPIC, instance_id: bench}
  batch_max_records: 20000
  batch_timeout_ms: 500
YAML
E_PORT=$(free_port)
cat > "$DIR/relay-embedded.yaml" <<YAML
node_name: bench
data_dir: $DIR/relay-embedded-data
telemetry: {listen: "127.0.0.1:$E_PORT"}
sinks:
  local: {type: embedded, path: $DIR/index}
relay:
  kafka: {bootstrap_servers: "$BROKER", topics: [$TOPIC], group_id: bench-embedded-$TOPIC, instance_id: bench}
  batch_max_records: 20000
  batch_timeout_ms: 500
YAML

# Waits until the counter $2 on port $1 reaches $3; prints nothing.
wait_counter() {
  local port=$1 name=$2 want=$3 pid=$4 got
  while :; do
    got=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk -v n="$name" '$1 ~ "^"n"(_total)?({|$)" {s+=$2} END {printf "%d", s}')
    [ "${got:-0}" -ge "$want" ] && return 0
    kill -0 "$pid" 2>/dev/null || { echo "process $pid exited early"; return 1; }
    sleep 0.1
  done
}

# Runs `nevermore $1` until counter $2 reaches LINES; prints the stage's numbers.
stage() {
  local sub=$1 counter=$2 config=$3 port=$4 label=$5
  local start end ut st hwm
  start=$(date +%s.%N)
  "$BIN" "$sub" --config "$config" 2>"$DIR/stage-$port.log" &
  local pid=$!
  wait_counter "$port" "$counter" "$LINES" "$pid" || { tail -20 "$DIR/stage-$port.log"; exit 1; }
  end=$(date +%s.%N)
  read -r ut st < <(awk '{print $14, $15}' /proc/$pid/stat)
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid || true
  python3 - <<PY
tck = $(getconf CLK_TCK)
wall = $end - $start
cpu = ($ut + $st) / tck
mb = $INPUT_BYTES / 1e6
print(f"{'$label':<24} lines={$LINES} wall_s={wall:.2f} lines_per_s={$LINES/wall:,.0f} mb_per_s={mb/wall:.1f} "
      f"user_s={$ut/tck:.2f} sys_s={$st/tck:.2f} cpu_s_per_gb={cpu/(mb/1000):.2f} peak_rss_mib={$hwm/1024:.1f}")
PY
}

echo "input: $LINES lines, $((INPUT_BYTES / 1000000)) MB of CRI; broker $BROKER ($COMPRESSION); elasticsearch $ES"
stage collect nevermore_sink_records_acked "$DIR/config.yaml" "$C_PORT" "collect → kafka"
stage relay nevermore_relay_records_written "$DIR/relay.yaml" "$R_PORT" "relay kafka → es"
stage relay nevermore_relay_records_written "$DIR/relay-embedded.yaml" "$E_PORT" "relay kafka → embedded"
