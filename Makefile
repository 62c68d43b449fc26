# warren — `make help` lists the targets.
GO       ?= go
BIN      ?= bin
WORKERS  ?= 2
# make run listens on this address only (this machine); BIND=0.0.0.0 for every interface.
BIND     ?= 127.0.0.1
# The same build line the Dockerfiles use: static, trimmed, no VCS stamping.
GOBUILD  = CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w"

.PHONY: help build run test test-short test-compose fuzz-smoke fuzz bench soak model clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/api and bin/worker
	$(GOBUILD) -o $(BIN)/api ./cmd/api
	$(GOBUILD) -o $(BIN)/worker ./cmd/worker

run: build ## API on 127.0.0.1:8000, WORKERS (2) workers on 127.0.0.1:8001+i, against AMQP_URL; BIND=0.0.0.0 for all interfaces; Ctrl-C stops all
	@WORKERS=$(WORKERS) BIN=$(BIN) BIND=$(BIND) ./scripts/run.sh

# internal/deploycheck is a module of its own (its parsers — k8s, buildkit, compose-go
# — stay out of the service's go.mod); ./... of the root does not include it.
DEPLOYCHECK = internal/deploycheck

test: ## all tests, against a real RabbitMQ (fails if none can be found), the fuzz smoke run and the deployment checks
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) --no-print-directory fuzz-smoke
	cd $(DEPLOYCHECK) && $(GO) vet ./... && $(GO) test -count=1 ./...

# Every fuzz target, as package:Target (go test -fuzz takes one of each at a time).
# fuzz-smoke fails if a func Fuzz… in the tree is missing here. docs/limits.md
# (Fuzzing) has what each checks and how long each ran.
FUZZ_TARGETS = \
	pkg/oip:FuzzDecodeRequest pkg/oip:FuzzDecodeResponse \
	pkg/httperr:FuzzLabFields \
	pkg/api:FuzzProcessBody pkg/api:FuzzJobsBody pkg/api:FuzzInferBody pkg/api:FuzzHeaders \
	pkg/queue:FuzzDecodeDelivery \
	pkg/jobs/boltstore:FuzzDecodeJob pkg/jobs/redisstore:FuzzJobFromFlat \
	pkg/repository:FuzzParseConfig \
	pkg/model/httpmodel:FuzzServerReply pkg/catalog:FuzzAnnouncement \
	pkg/auth:FuzzParseKeys pkg/auth:FuzzCredential
FUZZSMOKE ?= 2s
FUZZTIME  ?= 1m

fuzz-smoke: ## run each fuzz target for FUZZSMOKE (2s): part of make test
	@GO=$(GO) ./scripts/fuzz.sh check $(FUZZ_TARGETS)
	@GO=$(GO) ./scripts/fuzz.sh run $(FUZZSMOKE) $(FUZZ_TARGETS)

fuzz: ## run each fuzz target for FUZZTIME (1m), one after another: make fuzz FUZZTIME=10m
	@GO=$(GO) ./scripts/fuzz.sh check $(FUZZ_TARGETS)
	@GO=$(GO) ./scripts/fuzz.sh run $(FUZZTIME) $(FUZZ_TARGETS)

test-short: ## unit tests only, no broker (nor helm) needed
	$(GO) test -short -count=1 ./...
	cd $(DEPLOYCHECK) && $(GO) test -short -count=1 ./...

# The compose test: docker-compose.yml for real, through `docker compose`. It needs a
# Docker engine (scripts/compose-engine.sh installs and starts Debian's where none
# answers), the compose and buildx CLI plugins (built from their Go modules once) and
# the stand-in images of the third-party images (built once; docs/running.md).
test-compose: ## run docker-compose.yml for real (Docker engine, CLI plugins and stand-in images set up as needed; docs/running.md)
	./scripts/compose-engine.sh
	./scripts/compose-tools.sh
	./scripts/compose-standins.sh
	WARREN_COMPOSE_TEST=1 $(GO) test -count=1 -v -timeout 45m ./internal/composetest

bench: build ## benchmark the farm against a raw amqp091-go RPC loop (see BENCHMARKS.md)
	$(GO) run ./cmd/bench -build=false $(BENCH_FLAGS)

# The soak run (not part of make test): SOAK of open-loop load at half the measured
# capacity with a fault every SOAK_FAULT_EVERY; the Markdown report goes to stdout and
# SOAK_OUT. The test's -timeout is SOAK plus SOAK_SLACK (build, broker, capacity,
# drain): "30m15m", which time.ParseDuration reads as 45m.
SOAK             ?= 30m
SOAK_FAULT_EVERY ?= 4m
SOAK_OUT         ?= soak-report.md
SOAK_SLACK       ?= 15m

soak: ## SOAK (30m) of real binaries under load with broker restarts and worker kills; errors and resource slopes to SOAK_OUT (docs/testing.md)
	WARREN_SOAK=$(SOAK) WARREN_SOAK_FAULT_EVERY=$(SOAK_FAULT_EVERY) WARREN_SOAK_OUT=$(abspath $(SOAK_OUT)) \
		$(GO) test -run '^TestSoak$$' -v -count=1 -timeout $(SOAK)$(SOAK_SLACK) ./internal/soak

# Debian's python3 (python3-sklearn, python3-onnx), not a virtualenv's.
PYTHON ?= /usr/bin/python3

model: ## retrain the shipped digits model: models/digits/1/model.onnx, its README and test vectors (reproducible)
	$(PYTHON) scripts/models/train_digits.py

clean: ## remove build output
	rm -rf $(BIN)
