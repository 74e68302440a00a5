# Sluice — make targets. `make run` and `make test` are the two a newcomer needs.
GO        ?= go
TOOLS     := $(CURDIR)/bin/tools
export PATH := $(TOOLS):$(PATH)
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 30s
# Every build, test and bench goes through this overlay: the Go runtime's
# netpoller with one line changed, so that goroutines a poll readies run in
# the order their sockets became ready (scripts/netpoll-fifo.sh). A plain
# `go build` works too, with the stock order. (A directory whose name starts
# with _ is not part of ./..., so the copy of the runtime's file is not either.)
OVERLAY   := $(CURDIR)/bin/_overlay/overlay.json
GOOVERLAY  = GO="$(GO)" GOFLAGS="$$($(GO) env GOFLAGS) -overlay=$(OVERLAY)"

# Pinned code generators, installed from the Go module proxy into bin/tools.
BUF_VERSION                := v1.73.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
PROTOC_GEN_VALIDATE_VERSION := v1.3.3
# The HTTP/2 conformance suite e2e/h2spec_test.go runs (v2 has no /v2 module path).
H2SPEC_VERSION             := v2.2.1+incompatible

.PHONY: all overlay build run test test-short lint generate check-generated tools fuzz bench bench-bodies bench-h2 bench-fanout bench-scale bench-scale-vm measure screenshot clean

all: build

build: overlay ## build sluice-cp, sluice-dp, sluicectl and demo-backend into bin/
	$(GOOVERLAY) $(GO) build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

overlay: ## write bin/_overlay/: the runtime's netpoll in epoll's order (scripts/netpoll-fifo.sh)
	@GO=$(GO) ./scripts/netpoll-fifo.sh $(dir $(OVERLAY))

run: build ## control plane + one node + demo backends, applies examples/quickstart.yaml
	./scripts/run.sh

test: lint check-generated overlay ## everything CI checks: lint, generated code, the race-enabled test suite
	$(GOOVERLAY) $(GO) test -count=1 -run '^(TestNetpollOrder|TestWaitingStackStartsSmall)$$' ./dataplane/internal/pace ./dataplane/httpproxy
	$(GOOVERLAY) $(GO) test -race -timeout 15m -count=1 ./...

test-short: overlay ## the unit tests only, quick
	$(GOOVERLAY) $(GO) test -short -count=1 ./...

lint: tools ## buf lint, gofmt, go vet (bench/fanout's module too), bash -n of the scripts
	buf lint
	@for f in scripts/*.sh .ci/run; do bash -n "$$f" || exit 1; done # no run of make bench checks them
	@out=$$(gofmt -l $$($(GO) list -f '{{.Dir}}' ./...)); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd bench/fanout && $(GO) vet ./... # its own module: kept building as the root's go.mod moves

generate: tools ## regenerate the Go code of proto/ with buf and local plugins
	buf generate

check-generated: generate ## fail when the committed generated code differs from `make generate`
	@git diff --exit-code --stat -- proto/ || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }

tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc $(TOOLS)/protoc-gen-validate $(TOOLS)/h2spec

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
$(TOOLS)/protoc-gen-validate:
	GOBIN=$(TOOLS) $(GO) install github.com/envoyproxy/protoc-gen-validate@$(PROTOC_GEN_VALIDATE_VERSION)
$(TOOLS)/h2spec:
	GOBIN=$(TOOLS) $(GO) install github.com/summerwind/h2spec/cmd/h2spec@$(H2SPEC_VERSION)

screenshot: overlay ## rewrite docs/dashboard.png from a real run of the dashboard in headless chromium
	$(GOOVERLAY) $(GO) test -count=1 -run '^TestDashboard$$' ./e2e -screenshot $(CURDIR)/docs/dashboard.png

fuzz: overlay ## run every fuzz target for FUZZTIME each
	@export $(GOOVERLAY); for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; done

bench: build ## the performance targets side by side with HAProxy, one table (scripts/bench.sh; BENCHMARKS.md)
	./scripts/bench.sh

bench-bodies: build ## 1 MiB uploads (length, chunked) and chunked downloads side by side with HAProxy (scripts/bench-bodies.sh)
	./scripts/bench-bodies.sh

bench-h2: build ## HTTP/2 clients (h2c) to HTTP/1.1 endpoints side by side with HAProxy: small requests and 1 MiB downloads (scripts/bench-h2.sh)
	./scripts/bench-h2.sh

bench-fanout: overlay ## fan-out to 1k and 10k nodes vs go-control-plane, and the delta path (own module: bench/fanout)
	cd bench/fanout && $(GOOVERLAY) $(GO) run . $(FANOUT_FLAGS)

bench-scale: overlay ## apply 10k clusters/100k endpoints under traffic, and idle connections' RSS on one node (bench/scale); SCALE_FLAGS=-h
	$(GOOVERLAY) $(GO) run ./bench/scale $(SCALE_FLAGS)

bench-scale-vm: overlay ## bench/scale's idle part in a QEMU guest, where the host's open-file limit is too low for 100k (scripts/scale-vm.sh)
	$(GOOVERLAY) SCALE_FLAGS="$(or $(SCALE_FLAGS),-only idle)" ./scripts/scale-vm.sh

measure: overlay ## lifecycle figures, p50/p99 over 20 runs: apply→last socket closed at 500 sessions; TCP recovery→balanced
	@out=$$(mktemp); SLUICE_MEASURE=1 $(GOOVERLAY) $(GO) test -count=1 -timeout 20m -run Measure -v ./e2e/ >$$out 2>&1; st=$$?; \
	  if [ $$st -eq 0 ]; then grep -E 'p50|^(---|ok)' $$out; else cat $$out; fi; rm -f $$out; exit $$st

clean:
	rm -rf bin .run
