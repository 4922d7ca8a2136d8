# Parley's developer and CI commands. `make test` is what CI runs (through .ci/run):
# it starts the local backend stand-ins (scripts/stack.sh), vets, tests every package
# against them, and stops what it started, whatever the tests' outcome.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin

GO       ?= go
STACK    := scripts/stack.sh
# `make test` registers as a user of the stack for as long as its shell ($$$$) lives, so it
# never stops services that `make stack` or a concurrent `make test` still uses.
STACK_TEST_USER := --user test --pid $$$$
FUZZTIME ?= 30s
PKGS     ?= ./...

.PHONY: help test stack stack-down stack-status run build bench bench-tools bench-compare bench-compare-quick bench-compare-shapes bench-ab fuzz lint vet

## help: list these targets
help:
	@sed -n 's/^## //p' Makefile

## test: stack up, go vet, a build for windows and darwin, go test -race (stack.env loaded, CI passed through), stack down; keeps go test's exit code
test:
	@set -euo pipefail; \
	trap '$(STACK) down $(STACK_TEST_USER)' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	$(STACK) up $(STACK_TEST_USER); \
	. ./stack.env; \
	echo "make test: go vet $(PKGS)"; \
	$(GO) vet $(PKGS); \
	echo "make test: go build for windows and darwin (go run ./cmd/parley works there too)"; \
	GOOS=windows $(GO) build ./...; GOOS=darwin $(GO) build ./...; \
	echo "make test: go test -race -count=1 -timeout 9m $(PKGS) (CI=$${CI:-})"; \
	$(GO) test -race -count=1 -timeout 9m $(PKGS)

## stack: start the local stand-ins and write stack.env (then: . ./stack.env && make run)
stack:
	@$(STACK) up
	@echo "stack is up; load it with: . ./stack.env"

## stack-down: release `make stack`; stops what the script started once no `make test` still runs
stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status

## run: serve on embedded defaults (or production backends after `. ./stack.env`)
run:
	$(GO) run ./cmd/parley

## build: the parley binary in bin/ (git-ignored)
build:
	$(GO) build -o bin/parley ./cmd/parley

# Benchmarks and fuzzing use the stand-ins when `make stack` is up (else backend cases skip).
LOAD_STACK_ENV := if [ -f stack.env ]; then . ./stack.env; fi

## bench: every benchmark, no tests
bench:
	@$(LOAD_STACK_ENV); $(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# `parley bench compare` measures Parley beside Centrifugo and a bare hub (docs/BENCHMARKS.md).
# Centrifugo is installed once, pinned, outside the repository, and runs as its own process.
CENTRIFUGO_VERSION := v6.9.1
BENCH_TOOLS := $${XDG_CACHE_HOME:-$$HOME/.cache}/parley-stack/bin
BENCH_BUILD  = $$(git rev-parse --short HEAD)$$(git diff --quiet HEAD -- . 2>/dev/null || echo +dirty)
BENCH_PARLEY := $${TMPDIR:-/tmp}/parley-bench-compare

## bench-tools: install Centrifugo $(CENTRIFUGO_VERSION) (go install, several minutes the first time) outside the repository
bench-tools:
	@set -eu; bin=$(BENCH_TOOLS); mkdir -p "$$bin"; \
	if $(GO) version -m "$$bin/centrifugo" 2>/dev/null | grep -q "centrifugal/centrifugo/v6[[:space:]]*$(CENTRIFUGO_VERSION)[[:space:]]"; then \
	  echo "centrifugo $(CENTRIFUGO_VERSION) is in $$bin"; \
	else \
	  echo "installing centrifugo $(CENTRIFUGO_VERSION) into $$bin (go install; several minutes on 2 cores)"; \
	  GOBIN="$$bin" GOFLAGS= $(GO) install github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION); \
	fi

## bench-compare: Parley, Centrifugo and the bare hub, interleaved, R=10/100/1000 and idle 10,000 (~8 min); ARGS=… adds flags
bench-compare: bench-tools
	$(GO) build -o $(BENCH_PARLEY) ./cmd/parley
	$(BENCH_PARLEY) bench compare --build "$(BENCH_BUILD)" --centrifugo "$(BENCH_TOOLS)/centrifugo" $(ARGS)

## bench-ab: this checkout against BASE=<commit>, interleaved with the bare hub, paired by round: R=1000, 8 rounds of 8 s (~7 min); ARGS=… overrides
bench-ab:
	@set -eu; test -n "$(BASE)" || { echo "make bench-ab BASE=<commit>: the build to measure this checkout against"; exit 2; }; \
	dir=$$(mktemp -d); trap 'git worktree remove --force "$$dir" >/dev/null 2>&1 || rm -rf "$$dir"' EXIT; \
	git worktree add --detach -q "$$dir" "$(BASE)"; \
	(cd "$$dir" && $(GO) build -o $(BENCH_PARLEY)-base ./cmd/parley); \
	$(GO) build -o $(BENCH_PARLEY) ./cmd/parley; \
	$(BENCH_PARLEY) bench compare --build "$(BENCH_BUILD) against $$(git rev-parse --short $(BASE))" \
	  --servers parley,parley-base,hub --base $(BENCH_PARLEY)-base --rooms 1000 --rounds 8 --duration 8s --idle 0 $(ARGS)

## bench-compare-quick: the same in about a minute, to check the tooling (not a measurement)
bench-compare-quick: override ARGS += --quick
bench-compare-quick: bench-compare

## bench-compare-shapes: Parley embedded against MariaDB messages and two replicas over Redis (needs `make stack`)
bench-compare-shapes:
	@$(LOAD_STACK_ENV); $(GO) build -o $(BENCH_PARLEY) ./cmd/parley && \
	$(BENCH_PARLEY) bench compare --build "$(BENCH_BUILD)" --servers parley,parley-mariadb,parley-replicas --idle 0 $(ARGS)

## fuzz: each Fuzz* target for FUZZTIME (default 30s); `go test -fuzz` takes one target at a time.
## Only packages whose tests mention `func Fuzz` are listed (listing compiles each test binary).
fuzz:
	@set -euo pipefail; $(LOAD_STACK_ENV); \
	dirs=$$(grep -rl --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git --exclude-dir=.stack '^func Fuzz' . | xargs -r -n1 dirname | sort -u); \
	for dir in $$dirs; do \
	  for target in $$($(GO) test -list '^Fuzz' "$$dir" | grep '^Fuzz' || true); do \
	    echo "make fuzz: $$dir $$target for $(FUZZTIME)"; \
	    $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$dir"; \
	  done; \
	done

## lint: gofmt and go vet
lint: vet
	@out=$$(find . \( -name node_modules -o -name '.*' -a ! -name . \) -prune -o -name '*.go' -print | xargs gofmt -l); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
