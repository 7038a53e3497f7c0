# The two commands of the README: `make demo` runs the product, `make test` runs every test.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo

.PHONY: test demo lint unit tools release-binary integration faults e2e image soak crds deploy toolchain controlplane bench mutants

## Everything CI runs: formatting, lints (Rust, shell, Python), licences, the import graph (no cycle), unit tests, tool checks (helm, promtool, Lua),
## the release binary the image ships, integration tests on a real control plane, the
## fault suite on a control plane of its own, then the e2e tier (the image on a real node).
test: lint unit tools release-binary integration faults e2e

toolchain:
	@hack/toolchain.sh

lint: toolchain
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) deny --locked check bans licenses sources
	hack/check-layers.py
	hack/lint.sh

unit: toolchain
	$(CARGO) test --locked --lib --bins

integration: toolchain
	hack/test-integration.sh

## kube-apiserver and etcd killed and restarted, the operator SIGKILLed, APF throttling: each
## test asserts invariants; its own control plane, one test at a time (a few minutes).
faults: toolchain
	hack/test-faults.sh

## Not part of `test`: 30 minutes of churn on 200 tenants with two replicas (SOAK_MINUTES,
## SOAK_TENANTS), invariants checked every few seconds, RSS slope and writes at rest reported.
soak: toolchain
	hack/soak.sh

## Not part of `test`: mutation testing of the pure modules against the unit tests alone
## (cargo-mutants; hours on 2 cores, MUTANTS_SHARD=0/8 runs a sample). Table: docs/development.md.
mutants: toolchain
	hack/mutants.sh

## Helm chart (lint --strict, schema, deploy/ current), alert rules (promtool check/test),
## dashboard JSON, Argo CD health checks under Lua 5.1, format v2 opened by an independent
## implementation (Python cryptography).
tools:
	hack/test-chart.sh
	hack/test-monitoring.sh
	hack/test-argocd-health.sh
	hack/test-v2-vectors.sh

## The binary the Dockerfile ships, built by the same script (hack/build-release.sh) and checked:
## distroless/cc libraries and glibc, version, CRDs, no build paths, runs as UID 65532.
release-binary:
	hack/test-release-binary.sh

## As users run it (as root; docs/e2e.md): the image built here, a node (kubelet, containerd,
## runc, CNI, kube-proxy) in a cluster that lives in a network namespace of its own, `helm
## install`, the CLI through the service proxy, leader handovers, Argo CD syncing tenants from
## Git, Prometheus scraping the pods. About 7.5 minutes with its builds cached (5 of them the
## operator-down alert's `for: 5m`); its builds about 25 minutes cold on a busy 2-core machine
## (docs/e2e.md). Cleans up everything it started, also on failure, and what a killed run left.
e2e: toolchain
	hack/test-e2e.sh

## The operator image as an OCI archive, without a daemon: the Dockerfile's final stage built
## by buildah (target/image/mltenant-operator.oci.tar; digest in target/image/digest).
image:
	hack/build-image.sh

## Build (or reuse from cache) etcd, kube-apiserver, kube-controller-manager and kubectl.
controlplane:
	hack/build-controlplane.sh

## Regenerate crds/ (and the chart's copy) from the Rust types, then deploy/ from the chart.
crds:
	$(CARGO) run --locked --quiet -- crds > crds/mltenant.io.yaml
	cp crds/mltenant.io.yaml charts/mltenant-operator/crds/mltenant.io.yaml
	hack/render-deploy.sh

## Re-render deploy/ from the chart (default values).
deploy:
	hack/render-deploy.sh

## Local control plane + operator + examples/. DEMO_ONESHOT=1 exits after printing the result;
## DEMO_PROMETHEUS=1 also runs Prometheus (chart's alert rules) on the operator and prints its URL.
demo: toolchain
	hack/demo.sh

## The operator against this machine's limits (raw write floor, RSA floor) and against the
## sealed-secrets controller, in one run on one local control plane (hack/bench.sh says what it
## measures; BENCH_TENANTS, default 1000, and BENCH_SCENARIOS select). Table in target/bench/.
bench: toolchain
	hack/bench.sh
