# kube-proxy for the offline kind node: the binary with the iptables, nftables and conntrack
# tools it drives. kube-proxy runs in the node's network namespace, so it must use the same
# iptables backend as the node (legacy or nf_tables, as the node's entrypoint chose); the
# wrapper at /usr/local/bin/kube-proxy picks the one that already holds rules, then runs it.
# iproute2 is for kind-netpol (netpol.Dockerfile, FROM this image), which routes between nodes.
ARG BASE_IMAGE=conveyor.local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      iptables nftables conntrack ipset kmod iproute2 \
 && rm -rf /var/lib/apt/lists/*
COPY kube-proxy /usr/local/bin/kube-proxy.bin
COPY kube-proxy-wrapper /usr/local/bin/kube-proxy
RUN chmod 0755 /usr/local/bin/kube-proxy
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
