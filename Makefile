# msrpcast — developer and CI entry points. `make help` lists them.
#
# `make test` is what .ci/run runs on a fresh Debian machine. It starts with `make deps`
# (scripts/install-deps.sh: installs what is missing when run as root, ~1 s when nothing is;
# as another user it stops with the list of what is missing). Every suite runs and must pass:
# none is skipped.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.NOTPARALLEL:
.DEFAULT_GOAL := help

CARGO ?= cargo
# Flags for `cargo test`: release, because the integration tests move hundreds of MiB.
TEST_FLAGS ?= --release
# cargo bench targets of `make bench`, in order (a name that is no bench target fails the run).
BENCHES ?= msrp engine http
# Executables printing BENCH lines, run by `make bench` after the cargo benches.
BENCH_SCRIPTS ?= benches/kamailio_e2e.sh
# Seconds per fuzz target in `make fuzz-smoke`.
FUZZ_SECONDS ?= 60
CBINDGEN_VERSION := 0.29.4
HEADER := include/msrpcast.h

.PHONY: help test fmt-check clippy doc cargo-test fuzz-build deny header-check bench-smoke c-tests \
	kamailio-relay-smoke kamailio-e2e browser-test bench fuzz-smoke demo deps kamailio-src header \
	kamailio-module install-kamailio-module kamailio-module-format kamailio-module-format-check \
	kamailio-module-intree soak soak-short deb deb-test

help:
	@echo 'make test          make deps, fmt check, clippy -D warnings, docs, cargo test, header check, bench smoke,'
	@echo '                   C tests, Kamailio relay smoke and end-to-end tests'
	@echo 'make soak          30-minute soak through Kamailio: 1,000 uploads, participants joining and'
	@echo '                   leaving every second, 5 % misbehaving receivers (soak-short: 2 minutes)'
	@echo 'make bench         loopback baseline + benchmarks; BENCH lines only on stdout'
	@echo 'make fuzz-smoke    every fuzz target for $(FUZZ_SECONDS) s (cargo-fuzz, no sanitizer)'
	@echo 'make fuzz-build    compile every fuzz target (part of make test)'
	@echo 'make deny          cargo deny: licenses, bans, sources (part of make test); advisories too'
	@echo '                   with DENY_ADVISORIES=1 (needs the advisory database host)'
	@echo 'make demo          Kamailio + 3 simulated participants + the upload page (Ctrl-C stops)'
	@echo 'make deps          install everything (root, Debian): scripts/install-deps.sh'
	@echo 'make kamailio-src  Kamailio source + module flags into .cache/kamailio-src'
	@echo 'make header        regenerate $(HEADER) with cbindgen $(CBINDGEN_VERSION)'
	@echo 'make kamailio-module / install-kamailio-module   build (and install) msrpcast.so'
	@echo 'make freeswitch-module / install-freeswitch-module   build (and install) mod_msrpcast.so'
	@echo '                   (FREESWITCH_PREFIX=<prefix>, or pkg-config freeswitch; docs/freeswitch.md)'
	@echo 'make freeswitch-e2e FREESWITCH_PREFIX=<prefix>   the FreeSWITCH end-to-end test (not in make test)'
	@echo 'make kamailio-module-format[-check]   clang-format the module in Kamailio'"'"'s style'
	@echo 'make kamailio-module-intree   build it with Kamailio'"'"'s module Makefile (scratch tree)'
	@echo 'make deb           the Debian package target/deb/msrpcast_<version>_<arch>.deb'
	@echo 'make deb-test      build it, apt-get install it (root), demo --check on the installed files'

# ---------------------------------------------------------------------------------------------
# make test

test: deps fmt-check clippy doc cargo-test fuzz-build deny header-check bench-smoke c-tests \
	kamailio-relay-smoke kamailio-e2e soak-short browser-test deb-test
	@echo 'make test: all suites passed'

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets --locked -- -D warnings

# The API docs build without a warning (broken intra-doc links included).
doc:
	RUSTDOCFLAGS='-D warnings' $(CARGO) doc --no-deps --locked

cargo-test:
	$(CARGO) test --locked $(TEST_FLAGS)

# Every fuzz target must keep compiling against the library (they drift when an API changes).
# A plain build on the default (stable) toolchain: it links libFuzzer but adds no coverage
# instrumentation, which is all a compile check needs; `make fuzz-smoke` (cargo-fuzz) runs them.
fuzz-build:
	$(CARGO) build --locked --manifest-path fuzz/Cargo.toml --bins
	@echo "fuzz-build: $$(ls fuzz/fuzz_targets/*.rs | wc -l) fuzz targets build"

# Supply chain: Cargo.lock against deny.toml. The advisories check fetches the RustSec database
# from its git host; it runs only with DENY_ADVISORIES=1 (the test machines cannot reach that
# host, and an offline run against no database would check nothing).
DENY_ADVISORIES ?=
deny:
	@command -v cargo-deny >/dev/null || { echo 'deny: cargo-deny is missing (scripts/install-deps.sh installs it)'; exit 1; }
	$(CARGO) deny --locked check $(if $(DENY_ADVISORIES),advisories) licenses bans sources
	$(CARGO) deny --locked --manifest-path fuzz/Cargo.toml check licenses bans sources

# The committed header must be exactly cbindgen's output, and compile as C99 and C++17.
header-check:
	@scripts/cbindgen-version.sh $(CBINDGEN_VERSION); \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cbindgen --quiet --config cbindgen.toml --crate msrpcast --output "$$tmp/msrpcast.h" .; \
	if ! diff -u $(HEADER) "$$tmp/msrpcast.h"; then \
		echo 'header-check: $(HEADER) differs from cbindgen output: run make header and commit'; \
		exit 1; \
	fi; \
	printf '#include "msrpcast.h"\nint main(void) { return 0; }\n' >"$$tmp/c.c"; \
	gcc -std=c99 -Wall -Wextra -Werror -pedantic -Iinclude -c "$$tmp/c.c" -o "$$tmp/c.o"; \
	cp "$$tmp/c.c" "$$tmp/cxx.cpp"; \
	g++ -std=c++17 -Wall -Wextra -Werror -pedantic -Iinclude -c "$$tmp/cxx.cpp" -o "$$tmp/cxx.o"; \
	echo 'header-check: $(HEADER) is up to date and compiles as C99 and C++17'

bench-smoke:
	$(CARGO) bench --locked --bench msrp -- --quick

# C tests of the C ABI (tests/c/): their Makefile's `test` target builds and runs them.
c-tests:
	$(MAKE) -C tests/c test

# Debian's msrp.so as an MSRP relay: proves the recipe the interop tests rely on.
kamailio-relay-smoke:
	python3 tests/kamailio/relay_smoke.py

# The module against the real Kamailio: build (flags checked by loading it), cfg check with the
# built module, then tests/kamailio/e2e/e2e.sh (Kamailio + sipp + msrpcast receive).
kamailio-e2e:
	kamailio-module/build.sh
	kamailio -c -f cfg/kamailio.cfg -A 'MSRPCAST_MODULE="$(CURDIR)/kamailio-module/build/msrpcast.so"'
	tests/kamailio/e2e/e2e.sh

# Soak through Kamailio (tests/kamailio/soak/README section in tests/kamailio/README.md): churn of
# participants, uploads over HTTP, misbehaving receivers; then no delivery without an end, engine
# RSS and descriptors back near the baseline, the spool empty, no unexpected ERROR in Kamailio's
# log. soak-short (part of make test) is the same with 2 minutes of churn; every SOAK_* variable
# of tests/kamailio/soak/soak.sh can be set in the environment to change either.
soak-short:
	kamailio-module/build.sh
	SOAK_SECS=$${SOAK_SECS:-120} SOAK_UPLOADS=$${SOAK_UPLOADS:-67} \
		SOAK_WARMUP_SECS=$${SOAK_WARMUP_SECS:-20} SOAK_CONF_SECS=$${SOAK_CONF_SECS:-40} \
		tests/kamailio/soak/soak.sh

soak:
	kamailio-module/build.sh
	tests/kamailio/soak/soak.sh

# The upload page in headless Debian Chromium (playwright-core): login, a 20 MiB upload to three
# receivers until "done", a cancelled upload; screenshots in artifacts/.
browser-test:
	tests/browser/run.sh

# The Debian package as an operator gets it: built, installed with apt-get (root), checked, the
# demo run against the installed module, tool and example cfg, removed again.
deb-test:
	tests/deb/deb-test.sh

# ---------------------------------------------------------------------------------------------
# Benchmarks, fuzzing, demo

bench:
	@BENCHES='$(BENCHES)' BENCH_SCRIPTS='$(BENCH_SCRIPTS)' scripts/bench.sh

fuzz-smoke:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in fuzz/fuzz_targets/*.rs; do \
		t=$$(basename "$$t" .rs); echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		scratch=$$(mktemp -d); \
		$(CARGO) fuzz run --sanitizer none "$$t" "$$scratch" "fuzz/corpus/$$t" -- -max_total_time=$(FUZZ_SECONDS); \
		rm -rf "$$scratch"; \
	done

demo:
	scripts/demo.sh

# ---------------------------------------------------------------------------------------------
# Set-up and generated files

deps:
	scripts/install-deps.sh

kamailio-src:
	scripts/kamailio-src.sh

header:
	scripts/cbindgen-version.sh $(CBINDGEN_VERSION)
	@mkdir -p include
	cbindgen --quiet --config cbindgen.toml --crate msrpcast --output $(HEADER) .
	@echo 'make header: wrote $(HEADER)'

kamailio-module:
	kamailio-module/build.sh

install-kamailio-module:
	kamailio-module/build.sh --install

# The Debian package (module, tool, example cfg, docs) from a staged tree: scripts/deb.sh.
deb:
	scripts/deb.sh

# The module's C files in Kamailio's style (kamailio-module/.clang-format; needs clang-format).
kamailio-module-format:
	kamailio-module/format.sh

kamailio-module-format-check:
	kamailio-module/format.sh --check

# The module built by Kamailio's own module Makefile in a scratch copy of the Kamailio source.
kamailio-module-intree:
	kamailio-module/intree-build.sh

# mod_msrpcast against an installed FreeSWITCH's development files (FREESWITCH_PREFIX=<prefix>,
# or `pkg-config freeswitch`); without them it says so and fails. Not part of `make test`.
.PHONY: freeswitch-module install-freeswitch-module freeswitch-e2e
freeswitch-module:
	freeswitch-module/build.sh

install-freeswitch-module:
	freeswitch-module/build.sh --install

# tests/freeswitch/e2e.sh against an installed FreeSWITCH (docs/freeswitch.md, "Tests"):
# make freeswitch-e2e FREESWITCH_PREFIX=<prefix>. Not part of `make test`: CI has no FreeSWITCH
# (nothing builds one here); without FREESWITCH_PREFIX this target fails and says so.
freeswitch-e2e:
	@[[ -n "$${FREESWITCH_PREFIX:-}" ]] || { echo 'freeswitch-e2e: set FREESWITCH_PREFIX=<the prefix of an installed FreeSWITCH>'; exit 1; }
	tests/freeswitch/e2e.sh
