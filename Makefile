# edgeswap: build, test, run and benchmark. `make help` lists the targets.
SWIFT        ?= swift
BUILD_FLAGS  ?=
RELEASE_DIR  := .build/release
DEBUG_DIR    := .build/debug
FIXTURES_DIR := Fixtures/generated
STORE_DIR    := Fixtures/store
RUN_LISTEN   ?= /ip4/127.0.0.1/tcp/4001/ws
RUN_KEY      ?= .tmp/dev.key

.PHONY: help build release deps test fixtures bench loadtest bench-storage bench-resets run clean

help:
	@echo "make build     debug build of every target"
	@echo "make test      install what the tests need, then run every test (loopback-only namespace)"
	@echo "make fixtures  generate the deterministic fixture CARs into $(FIXTURES_DIR)"
	@echo "make run       build, ingest the fixtures into $(STORE_DIR) and serve them on loopback"
	@echo "make bench     release build, then the benchmarks (figures on stdout)"
	@echo "make loadtest  edgeswap vs kubo serving cost under \`edgeswap load\` (Loadtest/README.md)"
	@echo "make bench-storage  cold/warm fetch of a 64 MiB DAG through SeaweedFS + Redis (Loadtest/README.md)"
	@echo "make bench-resets   server RSS before and after 1,000 connections that reset mid-transfer"

build:
	$(SWIFT) build $(BUILD_FLAGS)

release:
	$(SWIFT) build -c release $(BUILD_FLAGS)

# Debian packages and the Python venv that tests use (idempotent; see .ci/deps).
deps:
	bash .ci/deps

fixtures: build
	$(DEBUG_DIR)/edgeswap fixtures --output $(FIXTURES_DIR)

# Every test runs inside a private network namespace with only loopback up: interop tests start kubo and
# py-libp2p, which dial out on their own, and nothing here may reach past 127.0.0.0/8.
test: deps
	$(SWIFT) build --build-tests $(BUILD_FLAGS)
	bash .ci/in-netns $(SWIFT) test --skip-build $(BUILD_FLAGS)

# `make bench AREAS="car noise"` runs a subset.
bench: release
	$(RELEASE_DIR)/edgeswap-bench $(AREAS)

# Bitswap serving cost, edgeswap vs kubo v0.22, 1 and 16 clients; runs in its own loopback-only namespace.
# `make loadtest CLIENTS="1 16" ROUNDS_1=20 ROUNDS_N=3` (see Loadtest/README.md).
loadtest: deps
	bash Loadtest/compare-kubo.sh

# The S3 + Redis path: S3 requests, GETs, listings, Redis commands, p50/p99 and MB/s per DAG, cold and warm;
# SeaweedFS and redis-server in its own loopback-only namespace. `make bench-storage MIB=64 WINDOW=64`.
bench-storage: deps
	bash Loadtest/storage-bench.sh

# Memory kept after connections that reset mid-transfer (release serve, `edgeswap load --reset-after`), with the
# server's counts of what is left. `make bench-resets CONNECTIONS=1000 CLIENTS=20`.
bench-resets: deps
	bash Loadtest/reset-rss.sh

# Generates the fixtures (once), ingests them into a local store (idempotent), makes a development key (once)
# and serves the store on loopback; `--print-roots` prints the dial address, the roots by name and the kubo
# commands that fetch them. `make run RUN_LISTEN=/ip4/127.0.0.1/tcp/4002/ws` picks another address.
run: build
	$(DEBUG_DIR)/edgeswap fixtures --output $(FIXTURES_DIR)
	$(DEBUG_DIR)/edgeswap ingest --quiet --store $(STORE_DIR) $(FIXTURES_DIR)/cars/*.car
	@mkdir -p $(dir $(RUN_KEY))
	@test -f $(RUN_KEY) || $(DEBUG_DIR)/edgeswap key new --output $(RUN_KEY)
	@echo "serving $(STORE_DIR) (Ctrl-C stops); the banner below names the roots, the multiaddr and the kubo commands"
	$(DEBUG_DIR)/edgeswap serve --store $(STORE_DIR) --key $(RUN_KEY) --listen $(RUN_LISTEN) \
		--print-roots $(FIXTURES_DIR)/fixtures.json

clean:
	$(SWIFT) package clean
	rm -rf $(FIXTURES_DIR) $(STORE_DIR)
