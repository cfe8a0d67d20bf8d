#!/usr/bin/env bash
# Issue 14's scale measurement: builds the agent binary and
# examples/scale_agent.rs (release), then runs the real agent
# (`kube-nftpolicy controller`) against a fake API serving synthetic
# clusters of 10k and 100k pods, applying into a lab network namespace:
# first full apply time, VmHWM/VmRSS, single changes, and a step-by-step
# breakdown. Needs root; removes the namespaces and stops the agent at the
# end. Passes SCALE_* and KNP_AGENT_BIN through (see the example's docs),
# e.g. SCALE_SIZES=100000 SCALE_AGENT_ENV=MALLOC_ARENA_MAX=1 scripts/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/scale.sh: needs root (it builds network namespaces): sudo $0" >&2
  exit 1
fi
./scripts/deps.sh
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin kube-nftpolicy --example scale_agent
exec "$target/release/examples/scale_agent"
