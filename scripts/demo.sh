#!/usr/bin/env bash
# The demo on a fresh Debian machine: installs what is missing (see
# scripts/deps.sh), then replays the Calico NetworkPolicy tutorial on a
# two-node lab of network namespaces with real IPv4 and IPv6 packets
# (examples/calico_demo.rs). Needs root; removes everything it creates.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/demo.sh: needs root (it builds network namespaces): sudo $0" >&2
  exit 1
fi
./scripts/deps.sh
exec cargo run --release --example calico_demo
