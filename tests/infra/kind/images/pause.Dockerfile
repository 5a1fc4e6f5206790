# The pod sandbox image: tests/infra/kind/pause, a static binary, and nothing else.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
