// Command etcd is the etcd server, built from the pinned
// go.etcd.io/etcd/server/v3 module (see go.mod). It does what etcd's own
// main package does, without needing etcd's multi-module source tree.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
