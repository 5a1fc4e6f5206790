# kind-netpol (tests/infra/kind/netpol), the offline kind node's network agent (pod routes between
# nodes, NetworkPolicy enforcement), run by the DaemonSet in tests/infra/kind/node/default-cni.yaml.
# FROM the node's kube-proxy image, which has the iptables (legacy and nf_tables) and iproute2 that
# it drives too: in the node's containerd this image adds one layer, the binary.
ARG KUBE_PROXY_IMAGE
FROM ${KUBE_PROXY_IMAGE}
COPY kind-netpol /usr/local/bin/kind-netpol
ENTRYPOINT ["/usr/local/bin/kind-netpol"]
