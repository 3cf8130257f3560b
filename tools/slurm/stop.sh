#!/usr/bin/env bash
# Stop the single-node cluster started by tools/slurm/single-node.sh.
# Usage: tools/slurm/stop.sh STATE_DIR
# Cancels all jobs first so nothing is left running, then stops slurmd,
# slurmctld and munged. STATE_DIR (logs, state) is kept for inspection.
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 STATE_DIR" >&2
    exit 2
fi
STATE_DIR=$1

sudo_cmd=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo_cmd=sudo; fi

if pgrep -x slurmctld >/dev/null; then
    $sudo_cmd scancel --full --user=all 2>/dev/null \
        || $sudo_cmd scancel --full $(squeue -h -o %A 2>/dev/null) 2>/dev/null || true
fi

# Stop one daemon: by its pid file when there is one, otherwise by exact name.
stop_daemon() {
    local name=$1 pidfile=$2 pid
    pid=$(cat "$pidfile" 2>/dev/null || pgrep -x "$name" || true)
    [ -n "$pid" ] || return 0
    $sudo_cmd kill $pid 2>/dev/null || true
    for _ in $(seq 20); do
        $sudo_cmd kill -0 $pid 2>/dev/null || { echo "stopped $name"; return 0; }
        sleep 0.5
    done
    echo "$name did not stop, sending SIGKILL" >&2
    $sudo_cmd kill -9 $pid 2>/dev/null || true
}

# slurmd first so running job steps are cleaned up while slurmctld still lives.
stop_daemon slurmd "$STATE_DIR/slurmd.pid"
stop_daemon slurmctld "$STATE_DIR/slurmctld.pid"
stop_daemon munged /run/munge/munged.pid
