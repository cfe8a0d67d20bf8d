#!/usr/bin/env bash
# A local Kubernetes cluster for kube-nftpolicy, on one machine, in one command:
#
#   sudo ./scripts/cluster.sh up [NODES]   etcd + kube-apiserver (TLS, RBAC) on loopback, NODES (2)
#                                          nodes as network namespaces, a node runner per node
#                                          (real CNI plugins, pod status), our agent per node run
#                                          as the DaemonSet runs it; prints how to use it
#   sudo ./scripts/cluster.sh down         stop everything, remove every namespace and file it made
#   ./scripts/cluster.sh status            what runs
#   ./scripts/cluster.sh env               the exports `up` printed
#   ./scripts/cluster.sh kubectl ARGS...   kubectl as the cluster's admin
#   sudo ./scripts/cluster.sh probe --from NS/POD --to NS/POD|IP --port N[/udp] [--ipv6]
#                                          one request with real packets from a pod (no kubectl exec)
#   sudo ./scripts/cluster.sh agent stop|start|restart NODE   the agent of one node
#   sudo ./scripts/cluster.sh runner stop|start NODE          the node runner of one node
#   ./scripts/cluster.sh nft NODE          `nft list table inet kube-nftpolicy` on NODE
#   ./scripts/cluster.sh restart-apiserver | restart-etcd
#
# Layout: node i is the network namespace <prefix>-node<i>, pod CIDRs 10.244.i.0/24 and
# fd00:10:244:i::/64 on its cni0 bridge (made by the CNI bridge plugin), address 10.0.0.i/24
# and fd00::i/64 on a shared wire (the namespace <prefix>-wire holds its bridge); other
# nodes' pod CIDRs are routed over the wire (host-gw, as Flannel's host-gw backend does).
# The agent of node i runs inside node i's namespace (its host network), with
# NODE_NAME=node<i>, the args of manifests/10-daemonset.yaml, and a token of the
# ServiceAccount of manifests/00-rbac.yaml from the TokenRequest API; it reaches the API
# server at 127.0.0.1:<port> of the node, forwarded by the node runner.
#
# Environment:
#   KNP_CLUSTER_DIR      state, logs, kubeconfigs (default /run/kube-nftpolicy-cluster)
#   KNP_CLUSTER_PREFIX   network namespace prefix (default kc)
#   KNP_AGENT_BIN        kube-nftpolicy binary (default: built with cargo, release)
#   KNP_RUNNER_BIN       knp-cluster binary (default: built with cargo, release)
#   KNP_APISERVER_PORT, KNP_ETCD_CLIENT_PORT, KNP_ETCD_PEER_PORT, KNP_CLUSTER_BIN: see
#                        scripts/control-plane.sh
#   KNP_AGENT_ARGS       extra agent flags (tests: faster resync, ...)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export KNP_CLUSTER_DIR=${KNP_CLUSTER_DIR:-/run/kube-nftpolicy-cluster}
dir=$KNP_CLUSTER_DIR
prefix=${KNP_CLUSTER_PREFIX:-kc}
cp=$root/scripts/control-plane.sh

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces): sudo $0 $*"; }

node_ns() { printf '%s-node%s' "$prefix" "$1"; }
wire_ns() { printf '%s-wire' "$prefix"; }

load() {
  [ -f "$dir/cluster.env" ] || die "no cluster in $dir (run: sudo $0 up)"
  # shellcheck source=/dev/null
  . "$dir/cluster.env"
}

# pid_alive FILE: the pid in FILE runs.
pid_alive() { [ -f "$1" ] && kill -0 "$(<"$1")" 2>/dev/null; }

# stop_pid FILE: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local f=$1 pid i
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(<"$f")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

build_ours() {
  if [ -z "${KNP_AGENT_BIN:-}" ] || [ -z "${KNP_RUNNER_BIN:-}" ]; then
    log "building kube-nftpolicy and knp-cluster (cargo, release)"
    (cd "$root" && cargo build --release -q -p kube-nftpolicy -p nftpolicy-cluster --bins) >&2
  fi
  agent_bin=${KNP_AGENT_BIN:-$root/target/release/kube-nftpolicy}
  runner_bin=${KNP_RUNNER_BIN:-$root/target/release/knp-cluster}
  [ -x "$agent_bin" ] || die "no agent binary at $agent_bin"
  [ -x "$runner_bin" ] || die "no runner binary at $runner_bin"
}

# The nodes' namespaces, the wire between them, and host-gw routes.
make_nodes() {
  local n=$1 i j w
  w=$(wire_ns)
  ip netns add "$w"
  ip -n "$w" link add wire0 type bridge
  ip -n "$w" link set wire0 up
  for ((i = 1; i <= n; i++)); do
    local ns
    ns=$(node_ns "$i")
    ip netns add "$ns"
    ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
      net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    # Bridged pod traffic must reach the inet forward hook (br_netfilter, per namespace).
    ip netns exec "$ns" sysctl -q -w net.bridge.bridge-nf-call-iptables=1 \
      net.bridge.bridge-nf-call-ip6tables=1 2>/dev/null ||
      log "warning: br_netfilter sysctls missing in $ns: same-node pod traffic is not filtered"
    ip -n "$ns" link set lo up
    ip link add "n$i" netns "$ns" type veth peer name "p$i" netns "$w"
    ip -n "$w" link set "p$i" master wire0 up
    ip -n "$ns" link set "n$i" name eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "10.0.0.$i/24" dev eth0
    ip -n "$ns" addr add "fd00::$i/64" dev eth0 nodad
  done
  for ((i = 1; i <= n; i++)); do
    for ((j = 1; j <= n; j++)); do
      [ "$i" != "$j" ] || continue
      ip -n "$(node_ns "$i")" route add "10.244.$j.0/24" via "10.0.0.$j"
      ip -n "$(node_ns "$i")" -6 route add "fd00:10:244:$j::/64" via "fd00::$j"
    done
  done
}

# The agent's identity: the ServiceAccount of manifests/, a token from the
# TokenRequest API, and a kubeconfig that reaches the API through the node.
agent_identity() {
  "$KUBECTL" apply -f "$root/manifests/00-rbac.yaml" >&2
  local token
  token=$("$KUBECTL" -n kube-system create token kube-nftpolicy --duration=48h)
  cat >"$dir/agent.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$apiserver_port
    certificate-authority: $cp_dir_pki/ca.crt
users:
- name: kube-nftpolicy
  user:
    token: $token
contexts:
- name: agent
  context: {cluster: local, user: kube-nftpolicy}
current-context: agent
EOF
  chmod 600 "$dir/agent.kubeconfig"
}

# The DaemonSet's container args, as the manifest has them.
daemonset_args() {
  "$KUBECTL" create --dry-run=client -f "$root/manifests/10-daemonset.yaml" \
    -o go-template='{{range (index .spec.template.spec.containers 0).args}}{{.}}{{"\n"}}{{end}}'
}

start_runner() {
  local i=$1 nodes=$2
  local ns
  ns=$(node_ns "$i")
  mkdir -p "$dir/logs" "$dir/run"
  KUBECONFIG=$dir/admin.kubeconfig setsid "$runner_bin" node --name "node$i" --netns "$ns" \
    --pod-cidr "10.244.$i.0/24" --pod-cidr "fd00:10:244:$i::/64" \
    --node-ip "10.0.0.$i" --node-ip "fd00::$i" --cni-bin "$cluster_bin" --dir "$dir" \
    --nodes "$nodes" --api-forward "127.0.0.1:$apiserver_port" --api "127.0.0.1:$apiserver_port" \
    </dev/null >>"$dir/logs/runner-node$i.log" 2>&1 &
  echo $! >"$dir/run/runner-node$i.pid"
}

start_agent() {
  local i=$1 ns
  ns=$(node_ns "$i")
  mkdir -p "$dir/logs" "$dir/run"
  local -a args
  mapfile -t args <"$dir/agent.args"
  # shellcheck disable=SC2086 # KNP_AGENT_ARGS is a list of flags
  setsid ip netns exec "$ns" env NODE_NAME="node$i" KUBECONFIG="$dir/agent.kubeconfig" \
    RUST_LOG="${RUST_LOG:-info}" "$agent_bin" "${args[@]}" ${agent_extra_args:-} \
    </dev/null >>"$dir/logs/agent-node$i.log" 2>&1 &
  echo $! >"$dir/run/agent-node$i.pid"
}

# http_in NS PORT PATH: a GET from inside namespace NS (as the kubelet probes the agent).
http_in() {
  # shellcheck disable=SC2016
  ip netns exec "$1" timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3; cat <&3' "$2" "$3" 2>/dev/null || true
}

wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  die "timed out after ${secs}s waiting for $what"
}

node_ready() { "$KUBECTL" get node "node$1" -o jsonpath='{.status.conditions[0].status}' 2>/dev/null | grep -q True; }
agent_ready() { http_in "$(node_ns "$1")" 9841 /readyz | grep -q '^ok'; }

cmd_up() {
  need_root up
  local n=${1:-2} i nodes=""
  [[ $n =~ ^[1-9]$ ]] || die "NODES must be 1..9"
  if [ -f "$dir/cluster.env" ]; then die "already up in $dir (run: $0 down)"; fi
  "$root/scripts/deps.sh"
  cluster_bin=${KNP_CLUSTER_BIN:-$("$root/scripts/cluster-build.sh" | tail -n 1)}
  build_ours
  export KNP_CLUSTER_BIN=$cluster_bin
  local cp_env
  cp_env=$("$cp" up) || die "the control plane did not come up (logs in $dir)"
  eval "$cp_env"
  apiserver_port=${KNP_APISERVER_PORT:-6443}
  cp_dir_pki=$dir/pki
  for ((i = 1; i <= n; i++)); do
    ip netns list | grep -q "^$(node_ns "$i")\b" && die "namespace $(node_ns "$i") exists (KNP_CLUSTER_PREFIX?)"
    nodes+="${nodes:+,}node$i"
  done
  agent_extra_args=${KNP_AGENT_ARGS:-}
  {
    printf 'n=%q\nprefix=%q\ncluster_bin=%q\nagent_bin=%q\nrunner_bin=%q\n' "$n" "$prefix" "$cluster_bin" "$agent_bin" "$runner_bin"
    printf 'apiserver_port=%q\nnodes=%q\nagent_extra_args=%q\n' "$apiserver_port" "$nodes" "$agent_extra_args"
    printf 'KUBECONFIG=%q\nKUBECTL=%q\n' "$KUBECONFIG" "$KUBECTL"
  } >"$dir/cluster.env"
  make_nodes "$n"
  agent_identity
  daemonset_args >"$dir/agent.args"
  for ((i = 1; i <= n; i++)); do start_runner "$i" "$nodes"; done
  for ((i = 1; i <= n; i++)); do wait_for "node$i Ready" 30 node_ready "$i"; done
  for ((i = 1; i <= n; i++)); do start_agent "$i"; done
  for ((i = 1; i <= n; i++)); do wait_for "the agent of node$i ready" 60 agent_ready "$i"; done
  log "up: $n nodes; logs in $dir/logs"
  cmd_env
  cat >&2 <<EOF

The cluster is up. Try:
  export KUBECONFIG=$KUBECONFIG
  $KUBECTL get nodes -o wide
  $KUBECTL apply -f $root/examples/cluster/
  sudo $0 probe --from demo/client --to demo/web --port 80
  sudo $0 nft 1
  sudo $0 down
EOF
}

cmd_env() {
  load
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG"
  printf 'export KUBECTL=%q\n' "$KUBECTL"
  printf 'export KNP_CLUSTER_DIR=%q\n' "$dir"
}

cmd_down() {
  need_root down
  local i
  if [ -f "$dir/cluster.env" ]; then
    load
    for f in "$dir"/run/agent-*.pid "$dir"/run/runner-*.pid; do
      [ -e "$f" ] && stop_pid "$f"
    done
  fi
  "$cp" down || true
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-(node[0-9]|wire)" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$dir"
  log "down"
}

cmd_status() {
  load
  "$cp" status || true
  local i
  for ((i = 1; i <= n; i++)); do
    local r=stopped a=stopped
    pid_alive "$dir/run/runner-node$i.pid" && r="running (pid $(<"$dir/run/runner-node$i.pid"))"
    pid_alive "$dir/run/agent-node$i.pid" && a="running (pid $(<"$dir/run/agent-node$i.pid"))"
    printf 'node%s  runner %s; agent %s\n' "$i" "$r" "$a"
  done
}

cmd_agent() {
  need_root agent
  load
  local what=$1 node=${2#node}
  case $what in
    stop) stop_pid "$dir/run/agent-node$node.pid" ;;
    start) start_agent "$node"; wait_for "the agent of node$node ready" 60 agent_ready "$node" ;;
    restart) stop_pid "$dir/run/agent-node$node.pid"; start_agent "$node"
      wait_for "the agent of node$node ready" 60 agent_ready "$node" ;;
    *) die "agent stop|start|restart NODE" ;;
  esac
}

cmd_runner() {
  need_root runner
  load
  local what=$1 node=${2#node}
  case $what in
    stop) stop_pid "$dir/run/runner-node$node.pid" ;;
    start) start_runner "$node" "$nodes" ;;
    *) die "runner stop|start NODE" ;;
  esac
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  kubectl) shift; load; exec "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@" ;;
  probe) shift; need_root probe; load; exec "$runner_bin" probe --dir "$dir" "$@" ;;
  agent) shift; cmd_agent "$@" ;;
  runner) shift; cmd_runner "$@" ;;
  nft) shift; load; exec ip netns exec "$(node_ns "${1#node}")" nft list table inet kube-nftpolicy ;;
  restart-apiserver | restart-etcd) load; exec "$cp" "$1" ;;
  *) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
