# Thin wrapper around CMake. `make run` and `make test` work on a fresh
# Debian 12 machine: both install what is missing first.
BUILD      ?= build
ASAN_BUILD ?= build-asan
RELEASE_BUILD ?= build-release
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)
CMAKE_OPTS ?=

.PHONY: all deps build release asan test test-fast run format bench-store bench-model \
        bench-pipeline bench-server bench-cluster bench-inbox bench-decide-race fuzz clean

all: build

deps:
	@./scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_OPTS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target csa csa_t

# The optimised build, compiled only: -O3 finds warnings (maybe-uninitialized,
# stringop-*) that -O2 does not, so `make test` keeps it compiling.
release: deps
	@cmake -S . -B $(RELEASE_BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_OPTS) >/dev/null
	@cmake --build $(RELEASE_BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCSA_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Every test, once in the normal build and once under ASan + UBSan, after
# the Release build has compiled (not run). The browser test also needs
# Debian's Chromium.
test: release
	@CSA_DEPS_BROWSER=1 CSA_DEPS_TEST=1 ./scripts/deps.sh
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_OPTS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory asan
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# Normal build only: the quick loop while developing.
test-fast: deps
	@CSA_DEPS_TEST=1 ./scripts/deps.sh
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_OPTS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Each fuzz target for FUZZ_SECONDS under libFuzzer + ASan + UBSan (clang,
# on the machine already). Not part of `make test`, which replays the
# committed corpus instead.
fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCSA_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets
	@./scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

run: build
	@./scripts/run-demo.sh $(BUILD)/csa

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

bench-store: build
	@cmake --build $(BUILD) --target bench_store >/dev/null
	@./$(BUILD)/bench_store

bench-model: build
	@CSA_DEPS_BENCH=1 ./scripts/deps.sh || echo "bench-model: peers not installed, running csa only" >&2
	@./bench/bench-model.sh $(BUILD)/csa

bench-pipeline: build
	@cmake --build $(BUILD) --target bench_pipeline >/dev/null
	@./$(BUILD)/bench_pipeline

# Four reviewers decide each of 15 review tasks at once over HTTP: how many
# were told they won (exactly one may).
bench-decide-race: build
	@./bench/decide-race.sh $(BUILD)/csa 15 600

# The inbox's search index: build, catch-up, the first page of every filter
# at BENCH_TICKETS (100,000).
bench-inbox: build
	@cmake --build $(BUILD) --target bench_inbox >/dev/null
	@./$(BUILD)/bench_inbox

bench-cluster: build
	@CSA_DEPS_BENCH=1 CSA_DEPS_CLUSTER=1 ./scripts/deps.sh
	@./bench/bench-cluster.sh $(BUILD)/csa

bench-server: build
	@CSA_DEPS_BENCH=1 ./scripts/deps.sh || true
	@cmake --build $(BUILD) --target bench_loadgen >/dev/null
	@./bench/bench-server.sh $(BUILD)/csa $(BUILD)/bench_loadgen

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(RELEASE_BUILD) $(FUZZ_BUILD)
