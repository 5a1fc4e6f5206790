# One image for every Conveyor service; the command picks the service:
#   conveyor ingest | conveyor work --queue Q | conveyor operator | conveyor gateway
#
#   docker build -t conveyor .
#   docker build -t conveyor --build-arg BASE_IMAGE=registry.example.com/python:3.11-slim .
#
# BASE_IMAGE is any Debian-like image with python3 (3.11+) and its venv module; the same base
# is used by both stages so the virtualenv's interpreter path matches.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- build: wheels for the dependencies and for Conveyor, installed once into a venv ---------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/conveyor
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
 && /opt/conveyor/bin/pip wheel -q --wheel-dir /wheels -r requirements.txt \
 && /opt/conveyor/bin/pip install -q --no-index --find-links /wheels -r requirements.txt
COPY README.md ./
COPY services services
COPY operator operator
COPY cli cli
RUN /opt/conveyor/bin/pip wheel -q --no-deps --wheel-dir /wheels . \
 && /opt/conveyor/bin/pip install -q --no-index --no-deps /wheels/conveyor-*.whl \
 && /opt/conveyor/bin/python -m compileall -q /opt/conveyor/lib \
 && /opt/conveyor/bin/python -m pip uninstall -q -y pip setuptools

# --- runtime: the venv only, a numeric non-root user, nothing written at run time ------------
FROM ${BASE_IMAGE}
COPY --from=build /opt/conveyor /opt/conveyor
ENV PATH=/opt/conveyor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
# 10001: no entry in /etc/passwd is needed; the chart sets runAsNonRoot and a read-only root.
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["conveyor"]
CMD ["--help"]
