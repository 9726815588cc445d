#!/usr/bin/env bash
# Executor loss at scale (RELIABILITY.md): on `ember cluster up --executors 3`,
# SIGKILL one executor in the middle of a TPC-H query and of a CREATE MODEL,
# compare with the answers of a run without faults, and time both.
#
#   benches/reliability/executor_loss.sh data/tpch-sf1 data/higgs-2m [q18]
#
# Uses ./target/release/ember (cargo build --release -p ember-cli).
set -euo pipefail
tpch=${1:?TPC-H data dir}; higgs=${2:?classification data dir}; query=${3:-q18}
ember=${EMBER:-./target/release/ember}
work=$(mktemp -d); port=${PORT:-50091}
trap 'kill -INT $cluster 2>/dev/null; wait $cluster 2>/dev/null; rm -rf "$work"' EXIT

$ember cluster up --executors 3 --port "$port" --work-dir "$work/cluster" >"$work/up.log" 2>&1 &
cluster=$!
for _ in $(seq 100); do grep -q "^Submit with" "$work/up.log" 2>/dev/null && break; sleep 0.2; done
mapfile -t pids < <(grep -o 'executor-[0-9] (pid [0-9]*' "$work/up.log" | grep -o '[0-9]*$')
master="df://127.0.0.1:$port"
now() { date +%s.%N; }

# Once "$@" has run $2 seconds, kills the first executor that holds shuffle
# files for it; prints what it killed and the total time.
run_killing() {
  local out=$1 after=$2; shift 2
  local t0; t0=$(now)
  "$@" >"$out" 2>"$out.err" &
  local client=$! victim=""
  sleep "$after"
  while kill -0 $client 2>/dev/null && [ -z "$victim" ]; do
    for i in 1 2 3; do
      local pid=${pids[$((i-1))]}
      if kill -0 "$pid" 2>/dev/null && [ -n "$(find "$work/cluster/executor-$i" -type f 2>/dev/null | head -1)" ]; then
        kill -9 "$pid"; victim="executor-$i after $(echo "$(now) - $t0" | bc) s"; break
      fi
    done
    sleep 0.01
  done
  wait $client || { echo "FAILED: $(cat "$out.err")"; return 1; }
  echo "killed ${victim:-nothing (finished first)}; total $(echo "$(now) - $t0" | bc) s"
}

sql=(sql --master "$master" --data-dir "$tpch" -c "${SETTINGS:-}$(cat "tests/fixtures/tpch/queries/$query.sql")" --format csv)
t0=$(now); $ember "${sql[@]}" >"$work/clean.csv"; clean=$(echo "$(now) - $t0" | bc)
echo "$query without faults: $clean s"
run_killing "$work/faulted.csv" "$(echo "$clean / 2" | bc -l)" $ember "${sql[@]}"
cmp -s "$work/clean.csv" "$work/faulted.csv" && echo "$query: same answer" || { echo "$query: DIFFERENT answer"; diff "$work/clean.csv" "$work/faulted.csv" | head -20; wc -l "$work/clean.csv" "$work/faulted.csv"; cat "$work/faulted.csv.err"; exit 1; }
$ember sql --master "$master" --data-dir "$tpch" -c "select count(*) from nation" --format csv >/dev/null && echo "next query served"

features=$(seq -s, 0 27 | sed 's/\([0-9]*\)/f\1/g')
mkdir -p "$work/ml"; ln -s "$(realpath "$higgs")" "$work/ml/higgs"
create="create model clf options (model_type = 'logistic_regression', label = 'label') as select label, $features from higgs"
describe() { $ember sql --model-store "$1" -c "describe model clf" --format json | grep '"coefficients"'; }
t0=$(now); $ember sql --data-dir "$work/ml" --model-store "$work/m-embedded" -c "$create" >/dev/null
echo "CREATE MODEL embedded, no faults: $(echo "$(now) - $t0" | bc) s"
t0=$(now); $ember sql --master "$master" --data-dir "$work/ml" --model-store "$work/m-clean" -c "$create" >/dev/null
train=$(echo "$(now) - $t0" | bc); echo "CREATE MODEL on the cluster (2 executors left), no faults: $train s"
run_killing "$work/train.out" "$(echo "$train / 2" | bc -l)" $ember sql --master "$master" --data-dir "$work/ml" --model-store "$work/m-faulted" -c "$create"
python3 - "$(describe "$work/m-embedded")" "$(describe "$work/m-faulted")" <<'PY'
import sys
a, b = ([float(v) for v in s.split("[")[1].split("]")[0].split(",")] for s in sys.argv[1:])
worst = max(abs(x - y) / max(abs(x), 1.0) for x, y in zip(a, b))
print(f"model with a lost executor vs without: max relative difference {worst:.1e}")
sys.exit(0 if len(a) == len(b) and worst <= 1e-9 else 1)
PY
