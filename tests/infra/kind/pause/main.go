// pause is the process of a pod's sandbox container: it holds the pod's namespaces open,
// reaps the zombies of a pod that shares its process namespace, and exits on SIGINT or
// SIGTERM. Built static (CGO_ENABLED=0) into the image registry.k8s.io/pause of the
// offline kind node (tests/infra/kind/node-image.sh); Kubernetes' own pause is a C program doing the same.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not running as PID 1")
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			fmt.Fprintf(os.Stderr, "pause: shutting down, got signal %v\n", sig)
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
