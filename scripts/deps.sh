#!/usr/bin/env bash
# Installs what building and testing kube-nftpolicy needs on Debian
# bookworm, when it is missing: the Debian packages (nftables, iproute2,
# libnftnl-dev, libmnl-dev, pkg-config, kmod, conntrack; iptables and
# ipset for the kube-router-style side of the benchmarks), rustfmt and
# clippy, and the br_netfilter module where the kernel has it as a module.
# Needs root for apt-get; does nothing when everything is there.
# Used by scripts/test.sh, scripts/demo.sh and .ci/run.
set -euo pipefail

need=(nftables iproute2 libnftnl-dev libmnl-dev pkg-config kmod conntrack iptables ipset)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/deps.sh: missing Debian packages: ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "scripts/deps.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Bridged pod traffic reaches the inet forward hook only with br_netfilter
# (built in on some kernels: then there is nothing to load).
if [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
  modprobe br_netfilter 2>/dev/null || echo "scripts/deps.sh: cannot load br_netfilter" >&2
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
