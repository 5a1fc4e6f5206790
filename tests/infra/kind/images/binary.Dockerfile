# An image of one Go-built Kubernetes component (kube-apiserver, kube-controller-manager,
# kube-scheduler, etcd, coredns) under the name kubeadm pulls, for the offline kind node
# (tests/infra/kind/node-image.sh). FROM the local Debian base, because the binaries are built with cgo
# on this Debian; the base layer is shared by all of them in the node's containerd.
ARG BASE_IMAGE=conveyor.local/debian:bookworm
FROM ${BASE_IMAGE}
ARG NAME
COPY ${NAME} /usr/local/bin/${NAME}
# kubeadm's manifests name the command (`etcd`, `kube-apiserver`, ...); CoreDNS's Deployment
# runs the image's entrypoint with only arguments.
RUN ln -s /usr/local/bin/${NAME} /entrypoint
ENTRYPOINT ["/entrypoint"]
