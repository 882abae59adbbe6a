// Command etcd is the etcd server, built from the go.etcd.io/etcd/server/v3 version
// that k8s.io/kubernetes itself requires (the same thing etcd's own main.go does).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
