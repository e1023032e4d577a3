# shoal build targets. See README.md.
GO      ?= go
BIN     ?= bin/shoal
PREFIX  ?= /usr/local
# Fuzz time per target for `make fuzz`.
FUZZTIME ?= 10s

.PHONY: build test bench lint fuzz demo install clean bench-compare bench-dedup bench-apply bench-publish \
	bench-swarm-loopback bench-swarm-serve bench-swarm-latency

build:
	$(GO) build -o $(BIN) ./cmd/shoal

# The whole suite, integration tests included (needs root for some; see .ci/run).
test:
	$(GO) test -count=1 -timeout 14m ./...

# Go benchmarks of every package. Peer-tool comparisons live in bench/*.sh.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

# Peer-tool comparisons (docs/benchmarks.md). They install nothing: run
# .ci/run (or apt-get install casync zstd debootstrap e2fsprogs time bc) first.
bench-compare: build
	SHOAL=$(BIN) bench/compare-casync.sh "$(BENCH_FILE)" $(BENCH_RUNS)
bench-dedup: build
	SHOAL=$(BIN) bench/dedup.sh
bench-apply: build
	bench/apply.sh
bench-publish: build
	bench/publish.sh
# Swarm (issue 8): daemons on loopback; no extra tools needed.
# SWARM_SIZE, SWARM_RUNS, SWARM_N override the scripts' defaults.
bench-swarm-loopback: build
	SHOAL=$(BIN) bench/swarm-loopback.sh "$(SWARM_SIZE)" "$(SWARM_RUNS)"
bench-swarm-serve: build
	SHOAL=$(BIN) bench/swarm-serve.sh "$(SWARM_N)" "$(SWARM_SIZE)"
bench-swarm-latency: build
	SHOAL=$(BIN) bench/swarm-latency.sh "$(SWARM_RUNS)" "$(SWARM_SIZE)"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }
	$(GO) run ./scripts/importcheck docs/architecture.md

# A short run of every fuzz target (FUZZTIME each).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; done

demo: build
	./scripts/demo.sh

install:
	$(GO) build -o $(DESTDIR)$(PREFIX)/bin/shoal ./cmd/shoal

clean:
	rm -rf bin demo-out
