# Baton: `make demo` starts a local 3-node cluster, `make test` runs every test.
# Both install what is missing first (PostgreSQL 15, etcd-server, npm packages) and build.
SHELL := /bin/bash
PG_BIN ?= /usr/lib/postgresql/15/bin
DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: deps build demo demo-down test test-unit bench clean

deps: .deps-system node_modules/.package-lock.json

.deps-system:
	@./scripts/install-deps.sh
	@touch .deps-system

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch node_modules/.package-lock.json

build: deps native/relay/build/Release/baton_relay.node
	npx tsc -p tsconfig.json

# The proxy's native relay; without it (no compiler) the proxy relays in TypeScript, more slowly.
native/relay/build/Release/baton_relay.node: $(wildcard native/relay/*.c native/relay/*.h) native/relay/binding.gyp
	npm run --silent build:native >/dev/null || echo "warning: the native relay did not build; baton proxy will relay in TypeScript (slower)" >&2

demo: build
	node bin/baton.js up --dir $(DEMO_DIR) --nodes 3 --base-port 15432

demo-down:
	node bin/baton.js down --dir $(DEMO_DIR)

test: build
	@./scripts/install-deps.sh --test
	npx tsc -p tsconfig.check.json
	npm test

test-unit: build
	npm run test:unit

bench: build
	@./scripts/install-deps.sh --bench
	node --import tsx bench/failover.ts
	node --import tsx bench/proxy.ts
	node --import tsx bench/scale-out.ts
	node --import tsx bench/read-move.ts
	node --import tsx bench/drill.ts

clean:
	rm -rf dist .deps-system native/relay/build
