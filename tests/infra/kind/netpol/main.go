// Command kind-netpol is the offline kind node's network agent (tests/infra/kind/node-image.sh), on
// every node: it connects the node's pods to the other nodes' (podnetwork.go), and it enforces
// Kubernetes NetworkPolicies: the policy engine of sigs.k8s.io/kube-network-policies decides, and
// an iptables NFQUEUE dataplane of our own brings it the packets to decide on.
//
// kube-network-policies judges the first packet of each connection in user space against the
// cluster's NetworkPolicies (its standard evaluator: ingress and egress, pod, namespace and
// ipBlock peers, named ports). Its own dataplane diverts those packets with an nftables `queue`
// statement, which the kernels this project runs on lack (CONFIG_NFT_QUEUE=n); they have the
// iptables NFQUEUE target. So the engine is kept and the dataplane replaced: two chains in the
// mangle table, jumped to from POSTROUTING (after Service DNAT, before SNAT: the packet names the
// pods at both ends) and INPUT (pod to node), send the first packet of every new connection from
// or to a pod that some policy selects to queue --queue; the engine's verdict accepts or drops it,
// and conntrack lets the rest of an accepted connection through without asking again.
//
// As in kube-network-policies: connections that root opens from the node itself pass (the
// kubelet's probes), the queue is bypassed while nothing listens on it (fail open), and a policy
// applies to the connections opened after it is programmed, not to established ones. IPv4 only:
// kind's default cluster is single-stack.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/kube-network-policies/pkg/api"
	"sigs.k8s.io/kube-network-policies/pkg/network"
	"sigs.k8s.io/kube-network-policies/pkg/networkpolicy"
	"sigs.k8s.io/kube-network-policies/pkg/podinfo"
)

const (
	postroutingChain = "KIND-NETPOL-POSTROUTING"
	inputChain       = "KIND-NETPOL-INPUT"
)

func main() {
	klog.InitFlags(nil)
	queue := flag.Int("queue", 100, "the NFQUEUE number")
	node := flag.String("node", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	resync := flag.Duration("resync", 30*time.Second, "rewrite the rules at least this often")
	readyFile := flag.String("ready-file", "/tmp/ready", "created once the rules are in place")
	subnet := flag.String("pod-subnet", os.Getenv("POD_SUBNET"), "the cluster's pod subnet (default $POD_SUBNET)")
	cniDir := flag.String("cni-dir", "/etc/cni/net.d", "where the node's container runtime reads its CNI config")
	flag.Parse()
	if *node == "" {
		klog.Fatal("no node name: set NODE_NAME or -node")
	}
	podSubnet, err := netip.ParsePrefix(*subnet)
	if err != nil || !podSubnet.Addr().Is4() {
		klog.Fatalf("the pod subnet %q is not an IPv4 prefix: set POD_SUBNET or -pod-subnet (kind's is 10.244.0.0/16)", *subnet)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, *node, podSubnet.Masked(), *cniDir, *queue, *resync, *readyFile); err != nil {
		klog.Fatal(err)
	}
}

func run(ctx context.Context, node string, podSubnet netip.Prefix, cniDir string, queue int, resync time.Duration, readyFile string) error {
	config, err := restConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		return err
	}
	rules, err := newRules(queue)
	if err != nil {
		return err
	}

	// Pod networking first: the node is not Ready, nor are the policies of any use, without it.
	podCIDR, err := ownPodCIDR(ctx, client, node)
	if err != nil {
		return err
	}
	if !podSubnet.Contains(podCIDR.Addr()) {
		return fmt.Errorf("this node's podCIDR %s is outside the pod subnet %s", podCIDR, podSubnet)
	}
	if err := writeCNIConfig(cniDir, podCIDR); err != nil {
		return err
	}
	if err := masquerade(ctx, rules.mode, podSubnet); err != nil {
		return err
	}
	klog.InfoS("pods addressed from this node's range", "podCIDR", podCIDR, "subnet", podSubnet)

	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	nodeChanged := make(chan struct{}, 1)
	if _, err := nodes.Informer().AddEventHandler(onChange(nodeChanged)); err != nil {
		return err
	}
	podRoutes := &routes{self: node, nodes: nodes.Lister()}
	namespaces := factory.Core().V1().Namespaces()
	pods := factory.Core().V1().Pods()
	policies := factory.Networking().V1().NetworkPolicies()
	err = pods.Informer().SetTransform(func(obj any) (any, error) {
		if accessor, err := meta.Accessor(obj); err == nil {
			accessor.SetManagedFields(nil)
		}
		return obj, nil
	})
	if err != nil {
		return err
	}
	resolver, err := podinfo.NewInformerResolver(pods.Informer())
	if err != nil {
		return err
	}
	provider := podinfo.NewInformerProvider(pods, namespaces, nil, []podinfo.IPResolver{resolver})
	standard := networkpolicy.NewStandardNetworkPolicy(node, namespaces, pods, policies)
	engine := networkpolicy.NewPolicyEngine(provider, []api.PolicyEvaluator{standard})

	changed := make(chan struct{}, 1)
	engine.SetDataplaneSyncCallbacks(func() {
		select {
		case changed <- struct{}{}:
		default: // a sync is already due; it will see this change too
		}
	})
	factory.Start(ctx.Done())
	klog.InfoS("waiting for the pods, namespaces and network policies", "node", node)
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		return engine.Ready() && nodes.Informer().HasSynced(), nil
	})
	if err != nil {
		return err
	}
	if err := podRoutes.sync(ctx); err != nil {
		return err
	}

	nf, err := listen(ctx, engine, queue)
	if err != nil {
		return err
	}
	defer nf.Close() //nolint:errcheck // exiting anyway

	if err := rules.sync(ctx, engine); err != nil {
		return err
	}
	if err := os.WriteFile(readyFile, nil, 0o644); err != nil {
		return err
	}
	klog.InfoS("enforcing network policies", "queue", queue, "iptables", rules.mode)
	ticker := time.NewTicker(resync)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			// The rules stay: with --queue-bypass they let everything through until a new
			// instance listens again, which then finds them in place.
			return nil
		case <-nodeChanged:
			if err := podRoutes.sync(ctx); err != nil {
				klog.ErrorS(err, "setting the pod routes; trying again at the next change or resync")
			}
			continue
		case <-changed:
		case <-ticker.C:
			if err := podRoutes.sync(ctx); err != nil {
				klog.ErrorS(err, "setting the pod routes; trying again at the next change or resync")
			}
			if err := masquerade(ctx, rules.mode, podSubnet); err != nil {
				klog.ErrorS(err, "writing the masquerade rules; trying again at the next resync")
			}
		}
		if err := rules.sync(ctx, engine); err != nil {
			klog.ErrorS(err, "writing the iptables rules; trying again at the next change or resync")
		}
	}
}

// restConfig is the in-cluster configuration, pointed straight at the API server when kind
// says where it is (CONTROL_PLANE_ENDPOINT, see default-cni.yaml): the Service address needs
// kube-proxy's rules, which may not be there yet when this starts.
func restConfig() (*rest.Config, error) {
	config, err := rest.InClusterConfig()
	if err != nil {
		return nil, err
	}
	if endpoint := os.Getenv("CONTROL_PLANE_ENDPOINT"); endpoint != "" {
		config.Host = "https://" + endpoint
	}
	config.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	config.ContentType = "application/vnd.kubernetes.protobuf"
	return config, nil
}

// listen binds the queue and gives each packet the engine's verdict.
func listen(ctx context.Context, engine *networkpolicy.PolicyEngine, queue int) (*nfqueue.Nfqueue, error) {
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue: uint16(queue),
		// GSO: the kernel need not segment offloaded packets for us (only headers are read).
		// Fail open: a full queue accepts rather than drops.
		Flags:        nfqueue.NfQaCfgFlagGSO | nfqueue.NfQaCfgFlagFailOpen,
		MaxPacketLen: 128,
		MaxQueueLen:  1024,
		Copymode:     nfqueue.NfQnlCopyPacket,
		WriteTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("opening NFQUEUE %d: %w", queue, err)
	}
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		nf.Close() //nolint:errcheck // already failing
		return nil, err
	}
	judge := func(a nfqueue.Attribute) int {
		if a.PacketID == nil || a.Payload == nil {
			return 0
		}
		verdict := nfqueue.NfAccept
		packet, err := network.ParsePacket(*a.Payload)
		if err != nil {
			klog.ErrorS(err, "unreadable packet, let through")
		} else if allowed, err := engine.EvaluatePacket(ctx, &packet); err != nil {
			klog.ErrorS(err, "evaluating a packet, let through")
		} else if !allowed {
			verdict = nfqueue.NfDrop
			klog.InfoS("denied", "proto", packet.Proto, "src", packet.SrcIP, "srcPort", packet.SrcPort,
				"dst", packet.DstIP, "dstPort", packet.DstPort)
		}
		if err := nf.SetVerdict(*a.PacketID, verdict); err != nil {
			klog.ErrorS(err, "setting a verdict", "id", *a.PacketID)
		}
		return 0
	}
	onError := func(err error) int {
		var opError *netlink.OpError
		if errors.As(err, &opError) && opError.Timeout() {
			return 0
		}
		if ctx.Err() == nil {
			klog.ErrorS(err, "receiving from the queue")
		}
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, judge, onError); err != nil {
		nf.Close() //nolint:errcheck // already failing
		return nil, err
	}
	return nf, nil
}

// rules writes this program's two chains with iptables-restore, through the backend (legacy
// or nf_tables) that holds the node's rules, as the node's entrypoint and kube-proxy choose.
type rules struct {
	mode    string
	queue   int
	written string
}

func newRules(queue int) (*rules, error) {
	count := func(mode string) int {
		out, _ := exec.Command("iptables-" + mode + "-save").Output()
		n := 0
		for line := range strings.Lines(string(out)) {
			if strings.HasPrefix(line, "-") {
				n++
			}
		}
		return n
	}
	r := &rules{mode: "nft", queue: queue}
	if count("legacy") > count("nft") {
		r.mode = "legacy"
	}
	if _, err := exec.LookPath("iptables-" + r.mode + "-restore"); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rules) sync(ctx context.Context, engine *networkpolicy.PolicyEngine) error {
	ips, divertAll, err := engine.GetManagedIPs(ctx)
	if err != nil {
		return err
	}
	slices.SortFunc(ips, func(a, b netip.Addr) int { return a.Compare(b) })
	text := r.render(ips, divertAll)
	restore := exec.CommandContext(ctx, "iptables-"+r.mode+"-restore", "-w", "5", "--noflush")
	restore.Stdin = strings.NewReader(text)
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, out)
	}
	for chain, hook := range map[string]string{postroutingChain: "POSTROUTING", inputChain: "INPUT"} {
		if err := ensureJump(ctx, r.mode, "mangle", hook, chain); err != nil {
			return err
		}
	}
	if text != r.written {
		klog.InfoS("rules written", "pods", len(ips), "all", divertAll)
		r.written = text
	}
	return nil
}

// render is the input of iptables-restore --noflush: each chain declared is emptied and
// filled anew in one transaction; the table's other chains are left alone.
func (r *rules) render(ips []netip.Addr, divertAll bool) string {
	var b strings.Builder
	queue := fmt.Sprintf("-j NFQUEUE --queue-num %d --queue-bypass", r.queue)
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("*mangle")
	line(":%s - [0:0]", postroutingChain)
	line(":%s - [0:0]", inputChain)
	// Only a connection's first packet is judged; conntrack lets the rest follow it.
	line("-A %s -m conntrack ! --ctstate NEW -j RETURN", postroutingChain)
	line("-A %s -m conntrack ! --ctstate NEW -j RETURN", inputChain)
	// What root opens from the node itself (the kubelet's probes) and loopback pass.
	line("-A %s -m owner --uid-owner 0 -j RETURN", postroutingChain)
	line("-A %s -i lo -j RETURN", inputChain)
	if divertAll {
		line("-A %s %s", postroutingChain, queue)
		line("-A %s %s", inputChain, queue)
	}
	for _, ip := range ips {
		if !divertAll && ip.Is4() {
			line("-A %s -s %s %s", postroutingChain, ip, queue)
			line("-A %s -d %s %s", postroutingChain, ip, queue)
			line("-A %s -s %s %s", inputChain, ip, queue)
		}
	}
	line("COMMIT")
	return b.String()
}
