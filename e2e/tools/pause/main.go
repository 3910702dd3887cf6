// The pod sandbox ("pause") image's only program, for e2e/cluster.sh up --node:
// it holds the pod's namespaces open, reaps the zombies of the processes that
// share its PID namespace, and exits on SIGTERM or SIGINT. A static Go build
// (CGO_ENABLED=0) so the image needs nothing else; no registry is reachable
// here, so registry.k8s.io/pause cannot be pulled.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "--version" {
		fmt.Println("authplane-pause v1")
		return
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
