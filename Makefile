# devbox: build, test, benchmark.
GO      ?= go
# The test box is built from Debian's packages and cached here between runs.
# ARCH=arm64 (or aarch64): the arm64 box instead (make box ARCH=arm64).
BOX_ARCH = $(if $(filter arm64 aarch64,$(ARCH)),-arm64,$(if $(filter-out x86_64 amd64,$(ARCH)),$(error ARCH=$(ARCH): test boxes exist for x86_64 (default) and arm64)))
BOX     ?= /var/cache/devbox-test/debian12$(BOX_ARCH).qcow2
BIN     := bin/devbox
# How long make fuzz (part of make test) fuzzes the config parser.
FUZZTIME ?= 20s

.PHONY: build test test-unit lint cross fuzz test-e2e test-arm64 box bench demo clean

build:
	$(GO) build -o $(BIN) ./cmd/devbox

## test: everything: unit, a short fuzz run, end-to-end (real libvirtd and QEMU VMs).
test: test-unit fuzz test-e2e

## test-unit: fast; no libvirt, no network.
test-unit: lint cross
	$(GO) test ./...

## lint: no compiled binary is tracked; golden domains validate against libvirt's schema; go vet, the e2e tests too.
lint:
	bash scripts/check-tracked.sh
	bash scripts/validate-golden.sh
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...

## cross: devbox still builds for the other platforms it runs on.
cross:
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=darwin GOARCH=amd64 $(GO) build ./...
	GOOS=linux GOARCH=arm64 $(GO) build ./...

## fuzz: the config parser on generated input, for FUZZTIME.
fuzz:
	GO=$(GO) bash scripts/fuzz.sh FuzzParse ./internal/config/ $(FUZZTIME)

box:
	bash test/box/build-debian12$(BOX_ARCH).sh $(BOX)

test-e2e: box
	DEVBOX_E2E_BOX=$(BOX) $(GO) test -tags e2e -count=1 -v -timeout 70m ./test/e2e/

## test-arm64: an aarch64 guest boots under emulation through libvirt (not yet in make test).
ARM64_BOX := /var/cache/devbox-test/debian12-arm64.qcow2
test-arm64:
	$(MAKE) box ARCH=arm64
	DEVBOX_E2E_BOX=$(BOX) DEVBOX_E2E_BOX_ARM64=$(ARM64_BOX) $(GO) test -tags e2e -count=1 -v -timeout 60m -run TestArm64Boot ./test/e2e/

## bench: timings against OpenSSH on the same guest, in one run.
bench: box
	DEVBOX_E2E_BOX=$(BOX) $(GO) test -tags e2e -count=1 -v -timeout 60m -run '^$$' -bench . -benchtime 1x ./test/e2e/

## demo: a VM with Docker up on this machine, from nothing (run as root).
demo: box build
	bash scripts/demo.sh $(BOX)

clean:
	rm -rf bin
