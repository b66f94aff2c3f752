# Entry points. `make demo` trains the M1 model on Fashion-MNIST; `make test` runs the test suite.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DATA       ?= /usr/share/datasets/fashion-mnist
EPOCHS     ?= 2

.PHONY: all deps build test asan valgrind demo clean fuzz fuzz-run

all: build

deps:
	@bash tools/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (leaks reported by LeakSanitizer).
asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNN_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		CNN_SANITIZED=1 ctest --output-on-failure -j $(JOBS)

# The fast subset of the suite and a few short cnn runs under valgrind memcheck (tools/ci-valgrind.sh, in
# build-valgrind): any memory error or definite leak fails. A few minutes.
valgrind: deps
	bash tools/ci-valgrind.sh

# libFuzzer targets for the loaders (fuzz/, docs/fuzz.md): clang, ASan + UBSan, in $(FUZZ_BUILD).
# `make fuzz-run SECONDS=N` runs each target N seconds on a copy of its seed corpus (new inputs go to
# $(FUZZ_BUILD)/corpus/<target>, findings to $(FUZZ_BUILD)/findings/<target>/); fails on any finding.
FUZZ_BUILD   ?= build-fuzz
FUZZ_TARGETS ?= safetensors onnx model_text idx
SECONDS      ?= 60
FUZZ_FLAGS   ?= -rss_limit_mb=2048 -timeout=10 -max_len=65536
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCNN_FUZZ=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS) $(addprefix --target fuzz_,$(FUZZ_TARGETS))

fuzz-run: fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/findings/$$t; \
		echo "== fuzz_$$t: $(SECONDS) s"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		$(FUZZ_BUILD)/fuzz_$$t $(FUZZ_FLAGS) -max_total_time=$(SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/findings/$$t/ $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t \
			2>$(FUZZ_BUILD)/fuzz_$$t.log || { tail -n 60 $(FUZZ_BUILD)/fuzz_$$t.log; exit 1; }; \
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' $(FUZZ_BUILD)/fuzz_$$t.log; \
	done

demo: build
	$(BUILD)/cnn train models/fmnist-small.cnn --data $(DATA) --epochs $(EPOCHS) --seed 1

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
