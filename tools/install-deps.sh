#!/usr/bin/env bash
# Install the Debian packages the build, the tests and the demo need (apt-get when root; otherwise print
# the one command to run and fail). --ci also installs test-only packages (a headless browser for the
# report check, tests/cli_report.sh; clang with its sanitizer/fuzzer runtimes and OpenMP for the fuzz
# step, tools/ci-fuzz.sh; mpirun and python3 for tests/cli_mpi.sh; valgrind for tools/ci-valgrind.sh).
set -euo pipefail
PKGS="cmake gcc make pkg-config zlib1g-dev libjansson-dev libcmocka-dev dataset-fashion-mnist
      protobuf-c-compiler libprotobuf-c-dev libonnx-dev
      libpng-dev libjpeg-dev
      libopenmpi-dev openmpi-bin"
CI_PKGS="chromium libonnx-testdata python3-onnx openmpi-bin python3
         clang libclang-rt-14-dev libomp-dev valgrind"
[ "${1:-}" = "--ci" ] && PKGS="$PKGS $CI_PKGS"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
  echo "installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq $missing >&2
else
  echo "missing Debian packages; run:" >&2
  echo "  sudo apt-get install$missing" >&2
  exit 1
fi
