#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/property/golden tests and the
# kernel tests (network namespaces, real packets). Run as root: the kernel
# tests create network namespaces and load nftables rulesets into them.
# Installs the Debian packages it needs when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh: the kernel tests need root (network namespaces, nftables): sudo $0" >&2
  exit 1
fi
./scripts/deps.sh
# Here a kernel test that cannot run fails instead of skipping.
export KNP_REQUIRE_KERNEL=1
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
