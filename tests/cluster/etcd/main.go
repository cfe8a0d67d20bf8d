// Command etcd is etcd's own server main (go.etcd.io/etcd/server/v3), built
// from the module proxy for the local test control plane.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
