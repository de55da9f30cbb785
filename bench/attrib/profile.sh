#!/usr/bin/env bash
# Profiles the balancer core during one phase of the live lab (bench/benchlab): the cost
# attribution of bench/README.md. As root; needs perf (Debian: linux-perf), nft, wrk, taskset.
#
#   bench/attrib/profile.sh govs /tmp/attr      # or: kernel
#   bench/attrib/profile.sh govs /tmp/attr-tp -rx-mode throughput   # more benchlab flags
#
# It builds govs with symbols and benchlab, runs the phase with a 30 s flood, and in the middle
# of the flood counts events on the balancer CPU (perf stat), reads the counters
# (/proc/net/softnet_stat, /proc/softirqs, govs's threads' context switches), counts the
# worker thread's syscalls, then samples call stacks for 8 s. Last it splits the samples into
# buckets (classify.py) using the delivered rate and busy share benchlab logged.
set -euo pipefail
cd "$(dirname "$0")/../.."
phase=${1:?usage: profile.sh govs|kernel OUTDIR}
out=${2:?usage: profile.sh govs|kernel OUTDIR}
cpu=${BALANCER_CPU:-0}
mkdir -p "$out"
CGO_ENABLED=0 go build -o "$out/govs-sym" ./cmd/govs # no -s -w: perf shows Go symbols
CGO_ENABLED=0 go build -o "$out/benchlab" ./bench/benchlab
"$out/benchlab" -govs "$out/govs-sym" -phases "$phase" -duration 30s -single=false -peak=false -balancer-cpu "$cpu" "${@:3}" \
	>"$out/lab.txt" 2>"$out/lab.err" &
lab=$!
for _ in $(seq 1 120); do grep -q "udp: 64-byte\|udp: [0-9]*-byte" "$out/lab.err" 2>/dev/null && break; sleep 0.5; done
sleep 3 # past the warmup
snap() {
	cat /proc/net/softnet_stat >"$out/softnet$1"
	cat /proc/softirqs >"$out/softirqs$1"
	if [ -n "${pid:-}" ]; then
		grep -h ctxt_switches /proc/"$pid"/task/*/status >"$out/ctx$1" || true
	fi
}
pid=$(pgrep -f "$out/govs-sym run" | head -1 || true)
snap 0
perf stat -a -C "$cpu" -e raw_syscalls:sys_enter,sched:sched_switch,irq:softirq_entry,irq_vectors:call_function_single_entry,net:netif_receive_skb,napi:napi_poll \
	-- sleep 5 2>"$out/stat.txt"
snap 1
if [ -n "$pid" ]; then
	# the worker: the thread with the most CPU time
	worker=$(for t in /proc/"$pid"/task/*; do echo "$(awk '{print $14+$15}' "$t/stat") ${t##*/}"; done | sort -n | tail -1 | cut -d' ' -f2)
	perf stat -t "$worker" -e raw_syscalls:sys_enter,sched:sched_switch -- sleep 3 2>"$out/stat_worker.txt"
fi
perf record -C "$cpu" -g -o "$out/perf.data" -- sleep 8 2>/dev/null
wait "$lab" || true
perf script -i "$out/perf.data" -F comm,ip,sym,dso 2>/dev/null >"$out/script.txt"
# benchlab's log line: "delivered N pps (cpuC B% busy..."
read -r pps busy < <(sed -n 's/.*delivered \([0-9]*\) pps (cpu[0-9]* \([0-9]*\)% busy.*/\1 \2/p' "$out/lab.err" | tail -1)
bench/attrib/classify.py "$pps" "$busy" <"$out/script.txt" | tee "$out/buckets.md"
echo "delivered $pps pps, balancer CPU $busy% busy; counters in $out" >&2
