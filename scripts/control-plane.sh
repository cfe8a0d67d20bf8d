#!/usr/bin/env bash
# A local Kubernetes control plane on loopback for tests: etcd and
# kube-apiserver, no controller-manager, scheduler or kubelet.
#
#   scripts/control-plane.sh up                 start; prints eval-able exports on stdout
#   scripts/control-plane.sh env                print the same exports for a running one
#   scripts/control-plane.sh status             exit 0 when both run and are ready
#   scripts/control-plane.sh restart-apiserver  stop kube-apiserver, start it with the same flags, wait ready
#   scripts/control-plane.sh restart-etcd       the same for etcd (same data dir), then waits for the apiserver too
#   scripts/control-plane.sh down               stop both (SIGTERM, then SIGKILL) and remove the working dir
#
# Typical use:  eval "$(scripts/control-plane.sh up)"; "$KUBECTL" get ns
#
# Environment (read by `up`; later commands reuse what `up` recorded):
#   KNP_CLUSTER_DIR        working dir (default /run/kube-nftpolicy-cluster): pki/, etcd-data/,
#                          *.log, *.pid, *.args, admin.kubeconfig
#   KNP_CLUSTER_BIN        dir with etcd, kube-apiserver, kubectl, pki
#                          (default: the last line printed by scripts/cluster-build.sh)
#   KNP_APISERVER_PORT     kube-apiserver secure port on 127.0.0.1 (default 6443)
#   KNP_ETCD_CLIENT_PORT   etcd client port on 127.0.0.1 (default 2379)
#   KNP_ETCD_PEER_PORT     etcd peer port on 127.0.0.1 (default 2380)
#   KNP_READY_TIMEOUT      seconds to wait for readiness (default 60)
#
# `up` while the control plane runs is an error (exit 1); `up` over a dir whose
# processes are all gone removes it and starts afresh. A failed `up` stops
# what it started and keeps the logs. `down` when nothing is up does nothing.
#
# Admission: the ServiceAccount plugin is disabled, because without
# kube-controller-manager no namespace gets its `default` ServiceAccount and
# that plugin would reject every pod. Everything else is kube-apiserver's
# default set. Without the namespace controller a deleted namespace stays
# Terminating: use fresh names, or `kubectl delete ns X --wait=false`.
# --endpoint-reconciler-type=none: the `kubernetes` Service's only endpoint
# would be 127.0.0.1, which Endpoints validation rejects (loopback).
# etcd serves plain HTTP on 127.0.0.1 and runs with --unsafe-no-fsync (test data).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${KNP_CLUSTER_DIR:-/run/kube-nftpolicy-cluster}
marker=$dir/.kube-nftpolicy-control-plane

log() { printf 'control-plane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# ---- small helpers -------------------------------------------------------

# http_get PORT PATH: a plain-HTTP GET to 127.0.0.1 with bash's /dev/tcp,
# bounded to 3 s; prints the response.
# shellcheck disable=SC2016 # $0.. expand in the inner bash
http_get() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
    cat <&3' "$1" "$2" 2>/dev/null || true
}

# shellcheck disable=SC2016
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null; }

# alive NAME: the recorded pid runs our binary.
alive() {
  local pidf=$dir/$1.pid pid exe
  [ -f "$pidf" ] || return 1
  pid=$(<"$pidf")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$bin/$1" ]
}

load_state() {
  [ -f "$marker" ] || return 1
  # shellcheck source=/dev/null
  . "$dir/state"
}

# start NAME: runs $bin/NAME with the args recorded in NAME.args, in its own
# session, logging to NAME.log (appended across restarts).
start() {
  local name=$1 pid
  local -a args
  mapfile -t args <"$dir/$name.args"
  printf '\n==== %s start %s\n' "$(date -u +%FT%TZ)" "$name" >>"$dir/$name.log"
  setsid "$bin/$name" "${args[@]}" </dev/null >>"$dir/$name.log" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$dir/$name.pid"
  # Until the child has exec'ed, /proc/<pid>/exe is still bash or setsid,
  # and `alive` would call it dead: wait for the exec (bounded).
  local i exe
  for ((i = 0; i < 50; i++)); do
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || break
    [ "${exe% (deleted)}" != "$bin/$name" ] || break
    sleep 0.1
  done
  log "started $name (pid $pid, log $dir/$name.log)"
}

# stop NAME: SIGTERM, up to 20 s, then SIGKILL, up to 5 s more.
stop() {
  local name=$1 pid i
  if ! alive "$name"; then
    rm -f "$dir/$name.pid"
    return 0
  fi
  pid=$(<"$dir/$name.pid")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    alive "$name" || break
    sleep 0.2
  done
  if alive "$name"; then
    log "$name did not stop in 20 s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 25; i++)); do
      alive "$name" || break
      sleep 0.2
    done
    alive "$name" && die "$name (pid $pid) survived SIGKILL"
  fi
  rm -f "$dir/$name.pid"
}

# wait_ready NAME CHECK: polls CHECK every 0.5 s until it succeeds, NAME dies,
# or KNP_READY_TIMEOUT passes.
wait_ready() {
  local name=$1 check=$2 deadline=$((SECONDS + timeout_s)) i
  for ((i = 0; i < timeout_s * 4 + 10; i++)); do
    if "$check"; then
      log "$name ready after $((SECONDS - t0)) s"
      return 0
    fi
    if ! alive "$name"; then
      tail -n 30 "$dir/$name.log" >&2 || true
      die "$name exited; log: $dir/$name.log"
    fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.5
  done
  tail -n 30 "$dir/$name.log" >&2 || true
  die "$name not ready after ${timeout_s} s; log: $dir/$name.log"
}

etcd_ready() { http_get "$etcd_client_port" /health | grep -q '"health":"true"'; }

apiserver_ready() {
  [ "$("$bin/kubectl" --kubeconfig "$dir/admin.kubeconfig" --request-timeout=3s \
    get --raw /readyz 2>/dev/null)" = ok ]
}

print_env() {
  printf 'export KUBECONFIG=%q\n' "$dir/admin.kubeconfig"
  printf 'export KUBECTL=%q\n' "$bin/kubectl"
  printf 'export KNP_CLUSTER_BIN=%q\n' "$bin"
}

# ---- commands ------------------------------------------------------------

cmd_up() {
  case $dir in /* ) ;; *) die "KNP_CLUSTER_DIR must be absolute: $dir" ;; esac
  [ "$dir" != / ] || die "KNP_CLUSTER_DIR must not be /"
  if load_state; then
    if alive etcd || alive kube-apiserver; then
      die "already up in $dir (run \`$0 down\` first, or \`$0 env\`)"
    fi
    log "removing stale $dir (nothing running)"
    rm -rf "$dir"
  elif [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
    die "$dir exists, is not empty and was not made by this script"
  fi

  bin=${KNP_CLUSTER_BIN:-}
  if [ -z "$bin" ]; then
    bin=$("$root/scripts/cluster-build.sh" | tail -n 1)
  fi
  bin=$(cd "$bin" && pwd -P)
  for b in etcd kube-apiserver kubectl pki; do
    [ -x "$bin/$b" ] || die "$bin/$b missing (KNP_CLUSTER_BIN or scripts/cluster-build.sh)"
  done
  apiserver_port=${KNP_APISERVER_PORT:-6443}
  etcd_client_port=${KNP_ETCD_CLIENT_PORT:-2379}
  etcd_peer_port=${KNP_ETCD_PEER_PORT:-2380}
  timeout_s=${KNP_READY_TIMEOUT:-60}
  for p in "$apiserver_port" "$etcd_client_port" "$etcd_peer_port"; do
    if port_open "$p"; then die "127.0.0.1:$p is in use (set KNP_*_PORT)"; fi
  done

  mkdir -p "$dir"
  chmod 700 "$dir"
  touch "$marker"
  {
    printf 'bin=%q\n' "$bin"
    printf 'apiserver_port=%q\n' "$apiserver_port"
    printf 'etcd_client_port=%q\n' "$etcd_client_port"
    printf 'etcd_peer_port=%q\n' "$etcd_peer_port"
    printf 'timeout_s=%q\n' "$timeout_s"
  } >"$dir/state"

  "$bin/pki" -dir "$dir/pki" -server "https://127.0.0.1:$apiserver_port"
  mv "$dir/pki/admin.kubeconfig" "$dir/admin.kubeconfig"

  local pki=$dir/pki
  cat >"$dir/etcd.args" <<EOF
--name=default
--data-dir=$dir/etcd-data
--listen-client-urls=http://127.0.0.1:$etcd_client_port
--advertise-client-urls=http://127.0.0.1:$etcd_client_port
--listen-peer-urls=http://127.0.0.1:$etcd_peer_port
--initial-advertise-peer-urls=http://127.0.0.1:$etcd_peer_port
--initial-cluster=default=http://127.0.0.1:$etcd_peer_port
--initial-cluster-state=new
--unsafe-no-fsync=true
EOF
  cat >"$dir/kube-apiserver.args" <<EOF
--bind-address=127.0.0.1
--advertise-address=127.0.0.1
--secure-port=$apiserver_port
--etcd-servers=http://127.0.0.1:$etcd_client_port
--cert-dir=$pki
--tls-cert-file=$pki/apiserver.crt
--tls-private-key-file=$pki/apiserver.key
--client-ca-file=$pki/ca.crt
--authorization-mode=Node,RBAC
--service-account-issuer=https://kubernetes.default.svc.cluster.local
--service-account-key-file=$pki/sa.pub
--service-account-signing-key-file=$pki/sa.key
--service-cluster-ip-range=10.96.0.0/12
--disable-admission-plugins=ServiceAccount
--endpoint-reconciler-type=none
--allow-privileged=true
--profiling=false
EOF

  t0=$SECONDS
  trap up_failed EXIT
  start etcd
  wait_ready etcd etcd_ready
  start kube-apiserver
  wait_ready kube-apiserver apiserver_ready
  trap - EXIT
  log "up in $dir; kubectl: $bin/kubectl"
  print_env
}

# A failed `up` stops what it started and keeps the logs; the next `up`
# (or `down`) removes them.
up_failed() {
  local rc=$?
  [ "$rc" -ne 0 ] || return 0
  log "up failed; stopping what it started (logs kept in $dir)"
  stop kube-apiserver || true
  stop etcd || true
  exit "$rc"
}

need_up() {
  load_state || die "not up ($dir has no control plane; run \`$0 up\`)"
}

cmd_env() { need_up; print_env; }

cmd_status() {
  need_up
  local rc=0 e a
  if alive etcd && etcd_ready; then e="ready (pid $(<"$dir/etcd.pid"))"
  elif alive etcd; then e="running, not ready (pid $(<"$dir/etcd.pid"))"; rc=3
  else e=stopped; rc=3; fi
  if alive kube-apiserver && apiserver_ready; then a="ready (pid $(<"$dir/kube-apiserver.pid"))"
  elif alive kube-apiserver; then a="running, not ready (pid $(<"$dir/kube-apiserver.pid"))"; rc=3
  else a=stopped; rc=3; fi
  printf 'etcd            %s  http://127.0.0.1:%s\n' "$e" "$etcd_client_port"
  printf 'kube-apiserver  %s  https://127.0.0.1:%s\n' "$a" "$apiserver_port"
  printf 'kubeconfig      %s\n' "$dir/admin.kubeconfig"
  return "$rc"
}

cmd_restart_apiserver() {
  need_up
  stop kube-apiserver
  t0=$SECONDS
  start kube-apiserver
  wait_ready kube-apiserver apiserver_ready
}

cmd_restart_etcd() {
  need_up
  stop etcd
  t0=$SECONDS
  start etcd
  wait_ready etcd etcd_ready
  if alive kube-apiserver; then
    wait_ready kube-apiserver apiserver_ready
  fi
}

cmd_down() {
  if ! load_state; then
    if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
      die "$dir was not made by this script; not touching it"
    fi
    log "not up; nothing to do"
    rm -rf "$dir"
    return 0
  fi
  stop kube-apiserver
  stop etcd
  rm -rf "$dir"
  log "down; removed $dir"
}

case ${1:-} in
  up) cmd_up ;;
  env) cmd_env ;;
  status) cmd_status ;;
  restart-apiserver) cmd_restart_apiserver ;;
  restart-etcd) cmd_restart_etcd ;;
  down) cmd_down ;;
  *) usage ;;
esac
