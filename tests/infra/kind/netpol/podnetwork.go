package main

// Pod networking across the kind cluster's nodes, as kind's own kindnet does it (host-gw):
//
//   - this node's pods get addresses from this node's spec.podCIDR (the controller-manager gives
//     each node a /24 of the cluster's pod subnet): a CNI config written into /etc/cni/net.d,
//     Debian's ptp and host-local plugins, which the node's containerd picks up as it appears;
//   - every other node's podCIDR is routed through that node's InternalIP, on the Docker
//     network all nodes share (the host bridges it; pod addresses are not rewritten between
//     nodes, so a NetworkPolicy on either end sees the pods themselves);
//   - what leaves the pod subnet for anywhere else (the node, Docker's DNS, the API server) is
//     masqueraded behind the node's address.
//
// A node container stopped and started (the chaos suite's node stop) may come back with
// another address: the Node's update rewrites the others' routes to it, and its own agent,
// starting again, writes its routes and rules anew.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

const (
	masqueradeChain = "KIND-POD-MASQUERADE"
	// routeProto marks the routes this program sets (a number of its own in the kernel's
	// rtm_protocol), so that it finds and removes the stale ones without keeping state.
	routeProto = "77"
	cniFile    = "10-kind.conflist"
)

// ownPodCIDR waits for the controller-manager to give this node its pod range.
func ownPodCIDR(ctx context.Context, client kubernetes.Interface, node string) (netip.Prefix, error) {
	var cidr netip.Prefix
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			klog.InfoS("reading this node, trying again", "node", node, "err", err)
			return false, nil
		}
		if n.Spec.PodCIDR == "" {
			return false, nil
		}
		cidr, err = netip.ParsePrefix(n.Spec.PodCIDR)
		return err == nil, err
	})
	return cidr, err
}

// writeCNIConfig puts this node's CNI config in place atomically (the runtime must never read
// half a file). Address state lives under /run, so a node started again hands out afresh.
func writeCNIConfig(dir string, podCIDR netip.Prefix) error {
	config := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kind-node",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": false, // masquerading is this program's, outside the pod subnet only
				"mtu":    1500,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"ranges":  [][]map[string]string{{{"subnet": podCIDR.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	text, err := json.MarshalIndent(config, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, cniFile)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(text) {
		return nil
	}
	tmp := filepath.Join(dir, "."+cniFile+".tmp")
	if err := os.WriteFile(tmp, text, 0o644); err != nil {
		return fmt.Errorf("writing the CNI config in %s: %w", dir, err)
	}
	return os.Rename(tmp, path)
}

// masquerade sends what pods address outside the pod subnet out under the node's address.
func masquerade(ctx context.Context, mode string, podSubnet netip.Prefix) error {
	text := strings.Join([]string{
		"*nat",
		fmt.Sprintf(":%s - [0:0]", masqueradeChain),
		fmt.Sprintf("-A %s -d %s -j RETURN", masqueradeChain, podSubnet),
		fmt.Sprintf("-A %s -s %s -j MASQUERADE", masqueradeChain, podSubnet),
		"COMMIT",
		"",
	}, "\n")
	restore := exec.CommandContext(ctx, "iptables-"+mode+"-restore", "-w", "5", "--noflush")
	restore.Stdin = strings.NewReader(text)
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore (nat): %w: %s", err, out)
	}
	return ensureJump(ctx, mode, "nat", "POSTROUTING", masqueradeChain)
}

// ensureJump makes hook jump to chain, first, unless it already does.
func ensureJump(ctx context.Context, mode, table, hook, chain string) error {
	check := exec.CommandContext(ctx, "iptables-"+mode, "-w", "5", "-t", table, "-C", hook, "-j", chain)
	if check.Run() == nil {
		return nil
	}
	insert := exec.CommandContext(ctx, "iptables-"+mode, "-w", "5", "-t", table, "-I", hook, "1", "-j", chain)
	if out, err := insert.CombinedOutput(); err != nil {
		return fmt.Errorf("jumping from %s to %s: %w: %s", hook, chain, err, out)
	}
	return nil
}

// routes keeps one route per other node: its podCIDR through its InternalIP.
type routes struct {
	self  string
	nodes corelisters.NodeLister
}

// wanted is what the Nodes say the routes must be.
func (r *routes) wanted() (map[string]string, error) {
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	want := map[string]string{}
	for _, n := range nodes {
		if n.Name == r.self || n.Spec.PodCIDR == "" {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				want[cidr.Masked().String()] = ip.String()
			}
		}
	}
	return want, nil
}

// sync sets the routes the Nodes call for and removes those of nodes that are gone.
func (r *routes) sync(ctx context.Context) error {
	want, err := r.wanted()
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "ip", "-4", "route", "show", "proto", routeProto).Output()
	if err != nil {
		return fmt.Errorf("listing the pod routes: %w", err)
	}
	have := map[string]string{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) >= 3 && fields[1] == "via" {
			have[fields[0]] = fields[2]
		}
	}
	for cidr, via := range want {
		if have[cidr] == via {
			continue
		}
		add := exec.CommandContext(ctx, "ip", "route", "replace", cidr, "via", via, "proto", routeProto)
		if out, err := add.CombinedOutput(); err != nil {
			return fmt.Errorf("routing %s via %s: %w: %s", cidr, via, err, out)
		}
		klog.InfoS("pod route set", "podCIDR", cidr, "via", via)
	}
	stale := slices.Sorted(func(yield func(string) bool) {
		for cidr := range have {
			if _, ok := want[cidr]; !ok && !yield(cidr) {
				return
			}
		}
	})
	for _, cidr := range stale {
		del := exec.CommandContext(ctx, "ip", "route", "del", cidr, "proto", routeProto)
		if out, err := del.CombinedOutput(); err != nil {
			return fmt.Errorf("removing the route to %s: %w: %s", cidr, err, out)
		}
		klog.InfoS("pod route removed", "podCIDR", cidr)
	}
	return nil
}

// onChange asks for a sync on every Node event (coalesced).
func onChange(changed chan<- struct{}) cache.ResourceEventHandler {
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(old, new any) { poke() },
		DeleteFunc: func(any) { poke() },
	}
}
