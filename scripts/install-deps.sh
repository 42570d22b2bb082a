#!/usr/bin/env bash
# Installs what otad needs to build, test and benchmark on Debian 12, using apt-get only.
# Does nothing (no apt-get call at all) when every package is already present.
#   usage: scripts/install-deps.sh [build|fuzz|test|bench]   (default: test)
# fuzz: clang and libFuzzer for scripts/fuzz.sh; test includes it (scripts/test.sh runs a short fuzz pass).
set -euo pipefail

build_pkgs=(g++ cmake ninja-build pkg-config libboost1.81-dev libboost-url1.81-dev libssl-dev
            nlohmann-json3-dev libsqlite3-dev libsqlitecpp-dev libspdlog-dev libcli11-dev openssl)
test_pkgs=(libgtest-dev libgmock-dev curl wget aria2 sqlite3 python3 python3-pytest python3-yaml python3-cryptography procps clang-format)
fuzz_pkgs=(clang libfuzzer-14-dev libclang-rt-14-dev)
bench_pkgs=(nginx-light wrk valgrind)

case "${1:-test}" in
  build) want=("${build_pkgs[@]}") ;;
  fuzz)  want=("${build_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  test)  want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${fuzz_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${fuzz_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 [build|fuzz|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
