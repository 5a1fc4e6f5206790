# InfluxDB 1.8 for the chart's in-release InfluxDB (influxdb.enabled) on an offline cluster: the
# influxd that hack/tools.sh builds from the Go module proxy (cgo against this Debian, so FROM
# the local Debian base) and Debian's curl, which the chart's start script uses, as the public
# influxdb:1.8 image has both. The chart runs `sh /scripts/start.sh` as uid 1000 with
# /var/lib/influxdb mounted.
ARG BASE_IMAGE=conveyor.local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/influxdb && chown 1000:1000 /var/lib/influxdb
COPY influxd /usr/local/bin/influxd
USER 1000:1000
EXPOSE 8086
CMD ["influxd"]
