#!/usr/bin/env bash
# The live lab benchmark (`make bench-lab`): govs against the kernel's nftables DNAT on the same
# network-namespace topology, in one run. Installs the tools it needs, then runs bench/benchlab
# with the built binary. Extra arguments go to benchlab, e.g. `bench/lab.sh -duration 2s -json`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "bench/lab.sh: needs root (network namespaces, AF_PACKET): run it with sudo" >&2
	exit 1
fi

missing=()
command -v nft >/dev/null || missing+=(nftables)
command -v wrk >/dev/null || missing+=(wrk)
command -v taskset >/dev/null || missing+=(util-linux)
command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
	echo "bench/lab.sh: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

GOVS_BIN=${GOVS_BIN:-bin/govs}
if [ ! -x "$GOVS_BIN" ]; then
	echo "bench/lab.sh: $GOVS_BIN not found; the govs phase will report failure (run \`make build\`)" >&2
fi

GO=${GO:-go}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CGO_ENABLED=0 "$GO" build -o "$out/benchlab" ./bench/benchlab
exec_status=0
"$out/benchlab" -govs "$GOVS_BIN" "$@" || exec_status=$?
exit "$exec_status"
