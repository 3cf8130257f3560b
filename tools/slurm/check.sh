#!/usr/bin/env bash
# Smoke test for the cluster from single-node.sh. Checks:
#  1. an array job (4 tasks, at most 2 at once) runs, two tasks concurrently,
#     with the submitter's PATH and the submit directory as working directory;
#  2. an afterok dependent job runs after the array succeeds;
#  3. when one array task fails, the afterok dependent job never runs and is
#     CANCELLED (DependencyParameters=kill_invalid_depend), so waiters finish.
# Usage: tools/slurm/check.sh [WORK_DIR]   (default /tmp/slurm-check)
set -euo pipefail

WORK=${1:-/tmp/slurm-check}
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
export PATH="/nonexistent/marker:$PATH"   # must reach the job's environment

# Final state of one job (or array task) as Slurm prints it: PENDING,
# RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL...
# `squeue -t all` also lists finished jobs still in slurmctld memory
# (MinJobAge=3600 in our slurm.conf); there is no sacct without slurmdbd.
job_state() { squeue -h -t all -j "$1" -o %T 2>/dev/null | sort -u | paste -sd, -; }

# Wait until no job in the list is PENDING/RUNNING (bounded). A job pending
# with reason DependencyNeverSatisfied would never finish by itself: report it.
wait_jobs() {
    local ids=$1
    for _ in $(seq 120); do
        local active
        active=$(squeue -h -j "$ids" -t PENDING,RUNNING,CONFIGURING,COMPLETING -o '%i %r' 2>/dev/null || true)
        [ -z "$active" ] && return 0
        if grep -q DependencyNeverSatisfied <<<"$active"; then
            echo "stuck: $active" >&2; return 1
        fi
        sleep 1
    done
    echo "timeout waiting for $ids" >&2; return 1
}

cat > task.sh <<'EOF'
#!/bin/bash
start=$(date +%s.%N); sleep 2
printf '%s %s %s pwd=%s path=%s\n' "$SLURM_ARRAY_TASK_ID" "$start" "$(date +%s.%N)" "$PWD" "$PATH" > "out-$SLURM_ARRAY_TASK_ID"
[ "$SLURM_ARRAY_TASK_ID" != "${FAIL_TASK:-none}" ]   # exit 1 for FAIL_TASK
EOF
chmod +x task.sh

t0=$(date +%s)
# --- 1+2: success path ---
A=$(sbatch --parsable --array=0-3%2 --cpus-per-task=1 -o slurm-%A_%a.out ./task.sh)
D=$(sbatch --parsable --dependency=afterok:"$A" -o dep.out --wrap "touch $WORK/done")
wait_jobs "$A,$D"
echo "array $A: $(job_state "$A"); dependent $D: $(job_state "$D")"
[ "$(job_state "$A")" = COMPLETED ] && [ "$(job_state "$D")" = COMPLETED ] && [ -e done ]
cat out-*
grep -q "pwd=$WORK " out-0 && grep -q "path=/nonexistent/marker:" out-0
# Concurrency: tasks 0 and 1 overlap (task 1 starts before task 0 ends).
awk 'FNR==1 {s[$1]=$2; e[$1]=$3} END {exit !(s[1] < e[0] && s[0] < e[1])}' out-0 out-1
echo "OK: array ran 2 at a time, afterok job ran, env PATH and cwd inherited"

# --- 3: failure path ---
rm -f out-* done
A=$(sbatch --parsable --array=0-3%2 --export=ALL,FAIL_TASK=1 -o /dev/null ./task.sh)
D=$(sbatch --parsable --dependency=afterok:"$A" -o /dev/null --wrap "touch $WORK/done")
wait_jobs "$A,$D"
echo "array $A: $(job_state "$A"); dependent $D: $(job_state "$D") ($(squeue -h -t all -j "$D" -o %r))"
[ "$(job_state "$D")" = CANCELLED ] && [ ! -e done ]
echo "OK: failed array task -> dependent job CANCELLED, never ran"
echo "check.sh took $(( $(date +%s) - t0 )) s"
