# govs — build, test, demo and benchmarks. `make test` is the whole suite (run it as root: the
# end-to-end tests build network namespaces); `make demo` shows govs balancing real traffic.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/govs

.PHONY: all build test vet demo bench bench-lab bench-instr pgo fuzz clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/govs

# staticcheck at a pinned version, run through the module proxy (no tool binary in the tree).
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
vet:
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@! git grep -l 'import "C"' -- '*.go'

# The whole suite: unit tests, fuzz seeds, and the end-to-end tests with real packets; then the
# packages whose tests need no root again under the race detector (which needs cgo for the test
# binaries only: govs itself is always built with CGO_ENABLED=0).
RACE_PKGS := ./bench/... ./cmd/... ./compile ./config ./conntrack ./control ./daemon ./dataplane ./dataplane/frame ./flow ./ha ./health ./internal/... ./metrics ./sched
test: vet build
	CGO_ENABLED=0 $(GO) test -count=1 -timeout 25m ./...
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

demo: build
	./$(BIN) demo

# Benchmarks of the pure parts (parser, rewrite, conntrack, schedulers); allocations reported.
# Then offline replays of generated captures (10k and 1M flows; BENCH_FLOWS=10000,1000000,10000000
# adds 10M: measured 22 GB resident and 3 to 7 minutes here) with 1 and 2 workers, against a copy-only baseline;
# then, as root with nft, wrk, taskset and ip installed, the live lab (kernel nftables DNAT vs govs,
# BENCH_LIVE per measurement, about a minute; BENCH_LIVE=0 skips it) in the same table style.
# Not root: one line says the live part was skipped. Whole target: a few minutes.
BENCH_FLOWS   ?= 10000,1000000
BENCH_WORKERS ?= 1,2
BENCH_LIVE    ?= 5s
bench: build
	$(GO) test -run '^$$' -bench . -benchmem -timeout 5m ./dataplane/... ./conntrack/ ./sched/
	GO=$(GO) ./$(BIN) bench suite -config bench/testdata/bench.toml -flows $(BENCH_FLOWS) -workers $(BENCH_WORKERS) -live $(BENCH_LIVE)

# The live lab: govs against the kernel's nftables DNAT on the same namespace topology.
bench-lab: build
	./bench/lab.sh

# Instructions per packet of the batched data plane, counted by callgrind: the same figure run
# after run, even on a busy machine, so hot-path changes can be compared one run each.
bench-instr:
	GO=$(GO) ./bench/instr.sh

# Refresh cmd/govs/default.pgo, the CPU profile go build optimises govs with (profile-guided
# optimisation: hot calls inlined; 4-17% less time per packet here): a replay of 100k generated
# flows. Commit the new profile. The replay's ports are in-memory ones, so the profile devirtualises
# no port call of the live data plane (see dataplane.Transmitter).
pgo:
	CGO_ENABLED=0 $(GO) build -pgo=off -o bin/govs-nopgo ./cmd/govs
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	./bin/govs-nopgo bench gen -o $$d/gen.pcap -flows 100000 -packets-per-flow 8 -size fixed:64 -seed 7 && \
	./bin/govs-nopgo bench replay -config bench/testdata/bench.toml -pcap $$d/gen.pcap -loops 20 -cpuprofile cmd/govs/default.pgo
	rm -f bin/govs-nopgo

# A short fuzzing pass over every fuzz target (seeds always run in `make test`).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 20s $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
