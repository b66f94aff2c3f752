# Entry points. `make demo` trains the M1 model on Fashion-MNIST; `make test` runs the test suite.
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
DATA       ?= /usr/share/datasets/fashion-mnist
EPOCHS     ?= 2

.PHONY: all deps build test asan demo clean

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

demo: build
	$(BUILD)/cnn train models/fmnist-small.cnn --data $(DATA) --epochs $(EPOCHS) --seed 1

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
