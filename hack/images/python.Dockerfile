# A local stand-in for the public python:3.11-slim-bookworm image, FROM the debootstrapped
# Debian base (hack/images.sh python): Python 3.11 with venv, as Debian packages it.
# extra-ca/ holds the host's own CA certificates (/usr/local/share/ca-certificates), so that
# builds behind a TLS-inspecting proxy trust it as the host does; it is empty elsewhere.
ARG BASE_IMAGE=conveyor.local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/bin/python3 /usr/local/bin/python
COPY extra-ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
# pip and requests use their own CA bundle unless told to use the system's.
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
