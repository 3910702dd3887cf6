# AuthPlane. `make run` and `make test` are all a fresh machine needs.
.PHONY: run test lint fmt build release help demo

CONFIG ?= config/dev.yaml

help:
	@echo "make run    - start the authorization server on SQLite with $(CONFIG)"
	@echo "make test   - install/start what the tests need, run every suite"
	@echo "make lint   - rustfmt check + clippy -D warnings"
	@echo "make build  - debug build of the workspace"
	@echo "make images - OCI image archives in target/images/ (no Docker needed)"
	@echo "make bench  - every grant of the AS (release, SQLite and Postgres) vs node oidc-provider under wrk"
	@echo "make demo   - the AS plus the example MCP server on :8080"
	@echo "make fuzz   - every fuzz target (cargo-fuzz, nightly) for FUZZ_SECONDS each (default 10)"
	@echo "make soak   - real flows at 80 % of the measured maximum for SOAK_SECONDS (default 120) on SQLite and Postgres"
	@echo "make faults - faults under load: kill -9, Postgres restart, full disk, key rotation, two servers (also in make test)"

run:
	cargo run --locked -p authplane-server --bin authserver -- --config $(CONFIG) serve

test:
	scripts/test.sh

# The AS and the example MCP server (sdk/examples/mcp-server) together.
demo:
	sdk/examples/mcp-server/demo.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

build:
	cargo build --workspace --locked

release:
	cargo build --release --locked -p authplane-server

# OCI image archives of authserver and authplane-operator, no container engine
# needed: target/images/<name>.tar (scripts/images.sh, docs/install/images.md).
.PHONY: images
images:
	scripts/images.sh

# Load test (not a timed test): every grant on the release build, on SQLite and
# on Postgres, and node oidc-provider side by side (e2e/bench/run.sh,
# docs/operations/performance.md).
.PHONY: bench bench-otel
bench:
	e2e/bench/run.sh

# Token endpoint with OpenTelemetry export off, at 10 % and at 100 % sampling.
bench-otel:
	e2e/bench/otel.sh

# Kubernetes operator: regenerate crds/yaml/ from authplane-crds (a test fails
# on drift), and benchmark 1,000 OAuthClients on the test control plane.
.PHONY: crds bench-operator
crds:
	cargo run --locked -q -p authplane-crds --bin crdgen
	charts/hack/sync-crds.py

bench-operator:
	e2e/bench-operator.sh

# Helm chart: deploy/authplane.yaml (CRDs + operator, default values) rendered
# from charts/authplane for kubectl and GitOps; CI fails on drift. `make crds`
# also copies crds/yaml/ into the chart (charts/hack/sync-crds.py).
.PHONY: manifests helm-test
manifests:
	charts/hack/render-manifests.sh

helm-test:
	e2e/helm-test.sh

# Reliability (docs/operations/reliability.md): coverage-guided fuzzing of
# every parser that sees untrusted bytes, the soak, and the fault suite.
.PHONY: fuzz soak faults
FUZZ_SECONDS ?= 10
SOAK_SECONDS ?= 120
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

soak:
	SOAK_SECONDS=$(SOAK_SECONDS) e2e/soak/run.sh

faults:
	e2e/faults/run.sh
