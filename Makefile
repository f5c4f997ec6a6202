# hearth: the two commands are `make run` and `make test`; see README.md.
# Everything real happens in CMake (build/) and CTest; this file only strings the steps together.

JOBS   ?= $(shell nproc)
BUILD  ?= build
ASAN   ?= build-asan
FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 20

.PHONY: all deps build run test test-postgres test-asan fuzz fuzz-smoke bench clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHEARTH_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

run: build
	$(BUILD)/hearth serve --demo

# The whole suite: every test on the embedded default (SQLite), the API tests again on PostgreSQL
# (+ Redis) started by scripts/services.sh, with the object store's tests on its S3 server, both again
# under ASan + UBSan, and a short run of every fuzzer.
test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	$(MAKE) --no-print-directory test-postgres
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory fuzz-smoke

test-postgres: build
	@scripts/with-services.sh sh -c 'cd $(BUILD) && HEARTH_TEST_PG="$$DATABASE_URL" HEARTH_TEST_REDIS="$$REDIS_URL" \
	  HEARTH_TEST_S3="$$S3_ENDPOINT" HEARTH_TEST_S3_BUCKET="$$S3_BUCKET" \
	  ctest -R "^(api/|unit/test_objects)" --output-on-failure -j$(JOBS)'

test-asan: deps
	@cmake -S . -B $(ASAN) -DCMAKE_BUILD_TYPE=Debug -DHEARTH_SANITIZE=ON -DHEARTH_WERROR=ON >/dev/null
	@cmake --build $(ASAN) -j$(JOBS)
	cd $(ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j$(JOBS)
	@scripts/with-services.sh sh -c 'cd $(ASAN) && HEARTH_TEST_PG="$$DATABASE_URL" HEARTH_TEST_REDIS="$$REDIS_URL" \
	  HEARTH_TEST_S3="$$S3_ENDPOINT" HEARTH_TEST_S3_BUCKET="$$S3_BUCKET" \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest -R "^(api/|unit/test_objects)" --output-on-failure -j$(JOBS)'

# libFuzzer targets (clang); fuzz-smoke runs each for FUZZ_SECONDS over its seed corpus.
fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DHEARTH_FUZZ=ON -DHEARTH_SANITIZE=ON >/dev/null
	@cmake --build $(FUZZ) -j$(JOBS)

fuzz-smoke: fuzz
	@scripts/fuzz.sh $(FUZZ) $(FUZZ_SECONDS)

bench: build
	@scripts/deps.sh --bench
	@bench/run.sh $(BUILD)/hearth

clean:
	rm -rf $(BUILD) $(ASAN) $(FUZZ)
