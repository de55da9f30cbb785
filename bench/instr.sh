#!/usr/bin/env bash
# Instructions per packet of the data plane's batched path (BenchmarkWorker/<flows>/batch), counted
# by valgrind's callgrind: unlike time on a shared VM, the count is the same run after run, so a
# change to the hot path can be judged by one run. It is the difference of two run lengths, so
# set-up cancels out; GOMAXPROCS=1 and GOGC=off keep the runtime's own work out of it. The count
# includes the benchmark's copy of each frame into the batch (what the kernel does into a ring).
#
# Usage: bench/instr.sh [flows=64k|flows=1M|connlog]   (connlog: 64k flows with the connection log on;
# installs valgrind when missing; about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
case=${1:-flows=64k}
if ! command -v valgrind >/dev/null; then
	echo "bench/instr.sh: installing valgrind" >&2
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi
GO=${GO:-go}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$GO" test -c -o "$dir/dataplane.test" ./dataplane/
count() {
	GOMAXPROCS=1 GOGC=off GODEBUG=asyncpreemptoff=1 valgrind --tool=callgrind \
		--callgrind-out-file="$dir/cg.$1" "$dir/dataplane.test" -test.run '^$' \
		-test.bench "^BenchmarkWorker/$case/batch\$" -test.benchtime "$1x" 2>&1 |
		sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
short=$(count 100000)
long=$(count 400000)
awk -v a="$short" -v b="$long" -v c="$case" 'BEGIN { printf "%s batch: %.0f instructions per packet\n", c, (b - a) / 300000 }'
