# shardproxy: a Redis sharding proxy that reads nutcracker.yml.
# Targets are phony; see README.md.

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/shardproxy/shardproxy/proxy.Version=$(VERSION)
BIN         := bin/shardproxy
STATICCHECK_VERSION := v0.8.2
GOBIN       := $(shell $(GO) env GOPATH)/bin

.PHONY: build run test lint bench bench-charts soak fuzz deps node-deps clean e2e-binaries

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/shardproxy

# Installs what is missing, starts three local redis-servers and shardproxy
# on 127.0.0.1:22121 with deploy/demo/nutcracker.yml. Ctrl-C stops everything.
run: deps build
	bash deploy/demo/run.sh $(BIN)

# Debian packages the demo and the tests need (redis-server, redis-tools,
# nutcracker as the compatibility oracle, iproute2, python3-redis).
deps:
	bash .ci/deps.sh

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

# The end-to-end test runs a real kube-apiserver, etcd and
# kube-controller-manager built from their Go modules; the first build takes
# 10 to 30 minutes on 2 cores and is cached outside the repository
# ($$SHARDPROXY_E2E_CACHE, default ~/.cache/shardproxy-e2e), later runs skip it.
e2e-binaries:
	$(GO) test -count=1 -run '^TestBuild$$' -timeout 60m ./discovery/kubetest

# The Node.js clients the proxy tests run (proxy/testdata/node), installed
# from package-lock.json; npm writes node_modules/.package-lock.json, so
# nothing runs while it is newer than the lock file.
NODE_DIR := proxy/testdata/node

node-deps: $(NODE_DIR)/node_modules/.package-lock.json

$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	npm ci --prefix $(NODE_DIR) --no-audit --no-fund

test: lint e2e-binaries node-deps
	$(GO) test -race -count=1 -timeout 30m ./...

# Short fuzzing runs of every parser, on top of the seed corpora that
# `make test` already runs.
fuzz:
	$(GO) test -run XXX -fuzz FuzzRequestParser -fuzztime 30s ./proxy/resp
	$(GO) test -run XXX -fuzz FuzzReplyScanner -fuzztime 30s ./proxy/resp
	$(GO) test -run XXX -fuzz FuzzParseConfig -fuzztime 30s ./proxy/config
	$(GO) test -run XXX -fuzz FuzzLookup -fuzztime 30s ./hashring

# The scripts that print a table also write it to BENCH_OUT_DIR as TSV;
# bench-charts draws those as the SVG charts bench/RESULTS.md shows, and
# redraws them from an earlier run's BENCH_OUT_DIR without measuring again.
BENCH_OUT_DIR ?= bench/out
BENCH_CHARTS  ?= bench/charts

bench: deps
	rm -f $(BENCH_OUT_DIR)/*.tsv
	$(GO) test -run XXX -bench . -benchmem ./hashring ./proxy/...
	BENCH_OUT_DIR=$(BENCH_OUT_DIR) bash bench/compare.sh
	BENCH_OUT_DIR=$(BENCH_OUT_DIR) BENCH_GROUPS=1 bash bench/compare.sh
	BENCH_OUT_DIR=$(BENCH_OUT_DIR) bash bench/latency.sh
	BENCH_OUT_DIR=$(BENCH_OUT_DIR) bash bench/cost.sh
	bash bench/blocked.sh
	bash bench/pubsub.sh
	bash bench/cluster.sh
	bash bench/tls.sh
	BENCH_OUT_DIR=$(BENCH_OUT_DIR) bash bench/memory.sh
	$(MAKE) bench-charts

bench-charts:
	$(GO) run ./bench/chart -in $(BENCH_OUT_DIR) -out $(BENCH_CHARTS)

# A bounded soak run (bench/soak): 10,000 connections, churn, GET/SET load,
# a reload a minute and a redis-server restart every five minutes; fails on
# RSS or goroutine drift, a lost write or a misrouted reply.
SOAK_DURATION    ?= 30m
SOAK_CONNECTIONS ?= 10000
SOAK_FLAGS       ?=

soak: deps build
	$(GO) run ./bench/soak --shardproxy $(BIN) --duration $(SOAK_DURATION) --connections $(SOAK_CONNECTIONS) $(SOAK_FLAGS)

clean:
	rm -rf bin
