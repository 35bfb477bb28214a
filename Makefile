# Solstice — the two set-up commands on a fresh machine are `make run` and `make test`.
GO          ?= go
BIN         := bin/solstice
GOLANGCI    := v2.15.0
TOOLS       := $(CURDIR)/.tools
export CGO_ENABLED := 1

.PHONY: build run demo test test-short bench lint fmt tools clean

build:
	$(GO) build -o $(BIN) ./cmd/solstice

## run: build and start the control plane on http://127.0.0.1:8080 (SQLite under ./data, seeded on first start)
run: build
	./$(BIN) serve

## demo: the guardrails' golden path in one process (a rollout, a fault, an automatic rollback), with its checks
demo: build
	./$(BIN) demo

## test: every test, with the race detector (PostgreSQL and Chromium tests skip locally when absent, fail in CI)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...

## bench: the benchmarks, figures to docs/benchmarks.md
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -timeout 30m ./... | tee bench.out
	$(GO) run ./cmd/benchdoc -in bench.out -out docs/benchmarks.md

lint: $(TOOLS)/golangci-lint
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1)
	$(GO) vet ./...
	$(TOOLS)/golangci-lint run ./...

$(TOOLS)/golangci-lint:
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI)

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin bench.out
