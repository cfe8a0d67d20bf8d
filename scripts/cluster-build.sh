#!/usr/bin/env bash
# Builds the local test cluster's binaries from the pinned Go modules in
# tests/cluster/ (see tests/cluster/README.md) and prints the directory that
# holds them as the last line of stdout. Progress goes to stderr.
#
#   kube-apiserver kubectl pki      tests/cluster/go.mod          (k8s.io/kubernetes)
#   etcd                            tests/cluster/etcd/go.mod     (go.etcd.io/etcd/server/v3)
#   bridge host-local loopback      tests/cluster/cni/go.mod      (containernetworking/plugins)
#   flanneld (only with KNP_CLUSTER_FLANNEL=1, see below)  tests/cluster/flannel/go.mod
#
# The output goes to ${KNP_CLUSTER_CACHE:-/var/cache/kube-nftpolicy/cluster}/<key>/bin/
# where <key> hashes the Go version, every go.mod, go.sum and .go file under
# tests/cluster/ and this script: a second run with nothing changed only
# hashes and prints. Builds use the committed go.sum (-mod=readonly), the
# usual GOMODCACHE/GOCACHE (so a rebuild after a pin change is incremental),
# GOTOOLCHAIN=local and CGO_ENABLED=0.
#
# Needs only Go (>= 1.26.8, for the CNI plugins' go.mod), and the Go module
# proxy the first time.
#
# KNP_CLUSTER_FLANNEL=1 also builds flanneld. That is the one cgo build:
# flannel's udp backend (pkg/backend/udp, linked in on amd64) is C, so
# CGO_ENABLED=0 fails with "undefined: runCProxy"; it is linked statically
# with gcc, which is apt-get installed if missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src=$root/tests/cluster
cache=${KNP_CLUSTER_CACHE:-/var/cache/kube-nftpolicy/cluster}

log() { printf 'cluster-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    PATH=/usr/local/go/bin:$PATH
  else
    die "go is not installed (need Go >= 1.26.8 in PATH)"
  fi
fi

export GOTOOLCHAIN=local CGO_ENABLED=0
# Our flags only: a -mod=mod from the caller's environment must not rewrite go.sum.
export GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
unset GOOS GOARCH GOWORK
export GOWORK=off

goversion=$(go env GOVERSION)/$(go env GOOS)-$(go env GOARCH)
flannel=${KNP_CLUSTER_FLANNEL:-0}
case $flannel in 0 | 1) ;; *) die "KNP_CLUSTER_FLANNEL must be 0 or 1" ;; esac

# The cache key: Go version, and every input file's name and content.
key=$(
  {
    printf 'go %s flannel %s\n' "$goversion" "$flannel"
    sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
    cd "$src"
    find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)
keydir=$cache/$key
bin=$keydir/bin
binaries=(kube-apiserver kubectl pki etcd bridge host-local loopback)
[ "$flannel" = 0 ] || binaries+=(flanneld)

complete() {
  [ -f "$keydir/complete" ] || return 1
  local b
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if complete; then
  log "up to date ($goversion, key $key)"
  printf '%s\n' "$bin"
  exit 0
fi

mkdir -p "$keydir"
# One build per key at a time; a second caller waits (at most an hour).
exec 9>"$keydir/lock"
if ! flock -w 3600 9; then
  die "timed out waiting for another build of $keydir"
fi
if complete; then
  log "built meanwhile by another run (key $key)"
  printf '%s\n' "$bin"
  exit 0
fi

tmp=$keydir/bin.partial
rm -rf "$tmp"
mkdir -p "$tmp"
start=$SECONDS

# modver MODDIR MODULE FORMAT: a field of a dependency's version from go.mod.
modver() { go -C "$1" list -m -f "$3" "$2"; }

# kube-apiserver, kubectl: version stamped like upstream's hack/lib/version.sh.
k8sver=$(modver "$src" k8s.io/kubernetes '{{.Version}}')
k8sdate=$(modver "$src" k8s.io/kubernetes '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}')
k8smajor=${k8sver#v}
k8sminor=${k8smajor#*.}
k8smajor=${k8smajor%%.*}
k8sminor=${k8sminor%%.*}
k8sld="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  k8sld+=" -X $pkg.gitVersion=$k8sver -X $pkg.gitMajor=$k8smajor -X $pkg.gitMinor=$k8sminor"
  k8sld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$k8sdate"
done
log "building kube-apiserver, kubectl $k8sver and pki (several minutes the first time)"
go -C "$src" build -ldflags "$k8sld" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl ./cmd/pki

log "building etcd $(modver "$src/etcd" go.etcd.io/etcd/server/v3 '{{.Version}}')"
go -C "$src/etcd" build -ldflags "-s -w" -o "$tmp/etcd" .

cniver=$(modver "$src/cni" github.com/containernetworking/plugins '{{.Version}}')
log "building CNI plugins $cniver"
go -C "$src/cni" build \
  -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$cniver" \
  -o "$tmp/" \
  github.com/containernetworking/plugins/plugins/main/bridge \
  github.com/containernetworking/plugins/plugins/ipam/host-local \
  github.com/containernetworking/plugins/plugins/main/loopback

if [ "$flannel" = 1 ]; then
  if ! command -v gcc >/dev/null 2>&1; then
    log "installing gcc for flanneld's cgo"
    apt-get install -y -q gcc libc6-dev >&2 ||
      { apt-get update -q >&2 && apt-get install -y -q gcc libc6-dev >&2; }
  fi
  flver=$(modver "$src/flannel" github.com/flannel-io/flannel '{{.Version}}')
  log "building flanneld $flver (cgo, static)"
  CGO_ENABLED=1 go -C "$src/flannel" build -tags netgo,osusergo \
    -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$flver -extldflags -static" \
    -o "$tmp/flanneld" github.com/flannel-io/flannel
fi

for b in "${binaries[@]}"; do
  [ -x "$tmp/$b" ] || die "missing $b after the build"
done
rm -rf "$bin"
mv "$tmp" "$bin"
printf '%s\n' "$goversion" >"$keydir/complete"
log "built in $((SECONDS - start)) s into $bin"
printf '%s\n' "$bin"
