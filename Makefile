# devbox: build, test, benchmark.
GO      ?= go
# The test box is built from Debian's packages and cached here between runs.
# ARCH=arm64 (or aarch64): the arm64 box instead (make box ARCH=arm64).
BOX_ARCH = $(if $(filter arm64 aarch64,$(ARCH)),-arm64,$(if $(filter-out x86_64 amd64,$(ARCH)),$(error ARCH=$(ARCH): test boxes exist for x86_64 (default) and arm64)))
BOX     ?= /var/cache/devbox-test/debian12$(BOX_ARCH).qcow2
BIN     := bin/devbox
# How long make fuzz (part of make test) fuzzes the config parser.
FUZZTIME ?= 20s

.PHONY: build test test-unit lint cross fuzz test-e2e test-arm64 box box-arm64 box-baked virtiofsd-rust bench demo clean

build:
	$(GO) build -o $(BIN) ./cmd/devbox

## test: everything: unit, a short fuzz run, end-to-end (real libvirtd and QEMU VMs).
test: test-unit fuzz test-e2e

## test-unit: fast; no libvirt, no network; with the race detector.
test-unit: lint cross
	$(GO) test -race ./...

## lint: no compiled binary is tracked; gofmt; shellcheck on every shell script (the guest's embedded ones too); golden domains validate against libvirt's schema; go vet, the e2e tests too.
lint:
	bash scripts/check-tracked.sh
	shellcheck -S warning $$(git ls-files '*.sh')
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed: $$(gofmt -l .)"; exit 1; }
	bash scripts/validate-golden.sh
	$(GO) vet ./...
	$(GO) vet -tags e2e ./...

## cross: devbox builds and vets for the other platforms it runs on (lint vets linux/amd64).
cross:
	GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	GOOS=darwin GOARCH=amd64 $(GO) vet ./...
	GOOS=linux GOARCH=arm64 $(GO) vet ./...

## fuzz: the config parser on generated input, for FUZZTIME.
fuzz:
	GO=$(GO) bash scripts/fuzz.sh FuzzParse ./internal/config/ $(FUZZTIME)

box:
	bash boxes/build/debian$(if $(BOX_ARCH),$(BOX_ARCH),-amd64).sh $(BOX)

## box-arm64: the arm64 test box, and Debian's arm64 static busybox for its images.
ARM64_BOX     := /var/cache/devbox-test/debian12-arm64.qcow2
BUSYBOX_ARM64 := /var/cache/devbox-test/busybox-arm64
box-arm64:
	$(MAKE) box ARCH=arm64
	bash test/box/fetch-busybox.sh arm64 $(BUSYBOX_ARM64)

## box-baked: the x86_64 box with the Docker engine baked in, made by devbox box build (cached by its inputs).
BAKED_BOX := /var/cache/devbox-test/debian12-docker.qcow2
box-baked: build
	$(BIN) box build debian-12 --arch x86_64 --engine docker --output $(BAKED_BOX)

## virtiofsd-rust: Debian 13's Rust virtiofsd, run through its own C library, for the e2e test of devbox with it.
RUST_VIRTIOFSD := /var/cache/devbox-test/virtiofsd-rust
virtiofsd-rust:
	bash test/virtiofsd/fetch-rust-virtiofsd.sh $(RUST_VIRTIOFSD)

E2E_ENV = DEVBOX_E2E_BOX=$(BOX) DEVBOX_E2E_BOX_BAKED=$(BAKED_BOX) DEVBOX_E2E_BOX_ARM64=$(ARM64_BOX) DEVBOX_E2E_BUSYBOX_ARM64=$(BUSYBOX_ARM64) DEVBOX_E2E_VIRTIOFSD_RUST=$(RUST_VIRTIOFSD)/virtiofsd
test-e2e: box box-arm64 box-baked virtiofsd-rust
	$(E2E_ENV) $(GO) test -tags e2e -count=1 -v -timeout 80m ./test/e2e/

## test-arm64: only the aarch64 guest (engine, arm64 and amd64 images).
test-arm64: box box-arm64
	$(E2E_ENV) $(GO) test -tags e2e -count=1 -v -timeout 60m -run TestArm64 ./test/e2e/

## bench: timings against OpenSSH on the same guest, in one run.
bench: box box-arm64 box-baked
	DEVBOX_E2E_BENCH=1 $(E2E_ENV) $(GO) test -tags e2e -count=1 -v -timeout 60m -run '^TestBench' ./test/e2e/

## demo: a VM with Docker up on this machine, from nothing (run as root).
demo: box build
	bash scripts/demo.sh $(BOX)

clean:
	rm -rf bin
