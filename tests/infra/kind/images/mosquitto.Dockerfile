# Mosquitto for the chart's in-release broker on an offline cluster: Debian's mosquitto (2.0)
# FROM the local Debian base, laid out as the eclipse-mosquitto image is (/mosquitto/config,
# /mosquitto/data, uid 1883), which the chart mounts and runs as.
ARG BASE_IMAGE=conveyor.local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /mosquitto/config /mosquitto/data /mosquitto/log \
 && printf 'listener 1883\nallow_anonymous true\n' >/mosquitto/config/mosquitto.conf \
 && chown -R 1883:1883 /mosquitto
USER 1883:1883
EXPOSE 1883
CMD ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
