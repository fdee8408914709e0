#!/usr/bin/env bash
# Every benchmark the README quotes for the learned policy, run on one
# checkpoint: what to rerun before a new policy becomes checkpoints/default.zip.
#
#   scripts/policy_benchmarks.sh                          # the shipped policy
#   scripts/policy_benchmarks.sh checkpoints/NAME.zip     # a candidate
#   OUT=results/mine WORKERS=1 scripts/policy_benchmarks.sh checkpoints/NAME.zip
#
# Each benchmark's table goes to OUT/NAME.txt and its results to OUT/NAME.json
# (default OUT: results/policy-benchmarks). Seeds are the README's: 0-2 (the
# demo), 1000-1004 (online), 2000-2004 (family by family), 0-4 (gangs); no
# training or validation uses them. Most of an hour on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
POLICY="rl:${1:-checkpoints/default.zip}"
OUT="${OUT:-results/policy-benchmarks}"
WORKERS="${WORKERS:-2}"
RLSCHED="${RLSCHED:-.venv/bin/rlsched}"
HEURISTICS=fifo,sjf,cp,tetris,heft,share,las
mkdir -p "$OUT"

run() {  # run NAME ARGS...: one evaluate, its table to NAME.txt, its results to NAME.json
    local name=$1
    shift
    echo "== $name ($(date +%H:%M:%S))" >&2
    "$RLSCHED" evaluate "$@" --workers "$WORKERS" --json "$OUT/$name.json" | tee "$OUT/$name.txt"
}

online="--workload wfcommons:workloads/wfcommons --arrivals poisson --load 0.85 --perturb all"
# shellcheck disable=SC2086  # the option strings split into words on purpose
{
run demo $online --pool preset:workstation-4 --seeds 3 \
    --scheduler random,$HEURISTICS,oracle:share,$POLICY
for pool in preset:workstation-4 identical:2 identical:8; do
    run "online-${pool#*:}" $online --pool "$pool" --seeds 5 --seed-offset 1000 \
        --scheduler $HEURISTICS,oracle:share,$POLICY
done
for gpus in 4 2 8; do
    run "stg-exact-$gpus" --workload stg:workloads/stg --pool "identical:$gpus" --estimates exact \
        --scheduler $HEURISTICS,$POLICY
done
run stg-default-4 --workload stg:workloads/stg --pool identical:4 --scheduler cp,heft,$POLICY
run gangs --workload synthetic:gangs --pool identical:8 --arrivals poisson --load 0.85 --seeds 5 \
    --scheduler $HEURISTICS,backfill,$POLICY
run holdout --workload wfcommons:workloads/wfcommons --workload synthetic:pipeline \
    --workload synthetic:sweep --workload synthetic:mixed --workload synthetic:layered \
    --pool preset:workstation-4 --arrivals poisson --load 0.85 --perturb all --seeds 5 \
    --seed-offset 2000 --scheduler $HEURISTICS,backfill,$POLICY,oracle:share --holdout-report
}
echo "== bench policy ($(date +%H:%M:%S))" >&2
"$RLSCHED" bench policy --checkpoint "${POLICY#rl:}" | tee "$OUT/bench-policy.json"
