#!/usr/bin/env bash
# Installs the system packages Palisade builds against, on Debian 12, once.
#   clang, libclang-dev : bindgen for librocksdb-sys
#   librocksdb-dev      : RocksDB 7.8.3, linked by the `rocksdb` crate 0.20.1
#                         (see .cargo/config.toml) instead of 40 CPU-minutes of C++
#   prometheus          : promtool, which checks the node's /metrics in the tests
#   dnsutils            : dig, which queries `palisade dns` in the client tests
#   iproute2            : ip netns/link, for the four-namespace deployment test
#   make                : builds jemalloc, the node's allocator (tikv-jemalloc-sys)
set -euo pipefail
need=()
for p in clang libclang-dev librocksdb-dev prometheus dnsutils iproute2 make; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
