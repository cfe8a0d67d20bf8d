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
# The local cluster's tests need etcd, kube-apiserver, kubectl and the CNI
# plugins (built from pinned Go modules, cached), and the node runner.
command -v go >/dev/null || { echo "scripts/test.sh: the cluster tests need Go >= 1.26.8 in PATH" >&2; exit 1; }
KNP_CLUSTER_BIN=$(./scripts/cluster-build.sh | tail -n 1)
export KNP_CLUSTER_BIN
cargo build --workspace --bins
cargo test --workspace
