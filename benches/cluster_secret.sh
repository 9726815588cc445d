#!/bin/bash
# Cluster TPC-H SF1 (data/tpch-sf1, from `ember datagen tpch --scale 1`): an open cluster
# against one with a cluster secret (every channel TLS with member certificates), alternating.
# Needs `cargo build --release -p ember-cli -p ember-benches --bin ember --bin tpch`.
cd "$(dirname "$0")/.."
export TOKEN=0f1e2d3c4b5a69788796a5b4c3d2e1f0
for round in 1 2; do
  for mode in open secret; do
    if [ $mode = secret ]; then export EMBER_CLUSTER_TOKEN=$TOKEN; else unset EMBER_CLUSTER_TOKEN; fi
    ./target/release/ember cluster up --executors 2 > /tmp/cl_$mode.out 2>&1 &
    CL=$!
    for i in $(seq 60); do grep -q "Submit with" /tmp/cl_$mode.out && break; sleep 1; done
    echo "== round $round mode $mode"
    ./target/release/tpch --scale 1 --data data/tpch-sf1 --master df://127.0.0.1:50050 --iterations 3 2>&1 | tail -4
    kill -INT $CL; wait $CL
    sleep 2
  done
done
