"""``conveyor operator``: run the kopf operator that turns MessageQueues into worker
Deployments sized to their queues."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor.probes import ProbeServer
from conveyor.settings import InfluxSettings, ProbeSettings, RedisSettings, SettingsError, load

log = logging.getLogger(__name__)

PEERING_NAME = "conveyor-operator"
"""The KopfPeering object an HA pair shares (the chart creates it)."""


class OperatorSettings(BaseSettings):
    """``OPERATOR_*`` (the chart sets them) and ``WATCH_NAMESPACE``."""

    model_config = SettingsConfigDict(env_prefix="OPERATOR_", extra="ignore")

    worker_image: str = Field(default="conveyor:0.1.0", min_length=1)
    worker_resources: str = Field(default="{}", description="JSON resources of worker pods")
    worker_drain_timeout_s: int = Field(default=20, ge=1)
    worker_grace_period_s: int = Field(default=30, ge=1)
    influx_secret: str = ""
    peering: bool = Field(default=False, description="run as one of an HA pair (kopf peering)")
    priority: int | None = Field(
        default=None, ge=0, description="peering priority; default: random, so one leads"
    )
    peering_lifetime_s: int = Field(
        default=15, ge=5, le=600, description="seconds before a silent leader is replaced"
    )

    @field_validator("worker_resources")
    @classmethod
    def _json(cls, value: str) -> str:
        try:
            if not isinstance(json.loads(value), dict):
                raise ValueError("must be a JSON object")
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not JSON: {exc}") from exc
        return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("operator", help="run the MessageQueue operator (kopf)")
    p.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument(
        "--namespace",
        default=os.environ.get("WATCH_NAMESPACE", "default"),
        help="namespace to watch (default $WATCH_NAMESPACE or 'default')",
    )
    p.set_defaults(run=cmd_operator)


async def cmd_operator(args: argparse.Namespace) -> int:
    import kopf
    from conveyor_operator.handlers import OperatorConfig, build_registry
    from conveyor_operator.rendering import WorkerDefaults
    from kubernetes import config as kube_config

    settings = load(OperatorSettings)
    redis_settings = load(RedisSettings)
    influx = load(InfluxSettings)
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        try:
            kube_config.load_kube_config()  # type: ignore[no-untyped-call]
        except (kube_config.ConfigException, FileNotFoundError) as exc:
            raise SettingsError(
                f"no Kubernetes credentials: not in a pod and no usable KUBECONFIG ({exc})"
            ) from exc
    env: list[dict[str, Any]] = [
        {"name": "REDIS_URL", "value": redis_settings.url or redis_settings.effective_url()},
        {"name": "REDIS_CLUSTER", "value": str(redis_settings.cluster).lower()},
        {"name": "PROBE_PORT", "value": "8080"},
    ]
    if os.environ.get("REDIS_PASSWORD"):
        env.append({"name": "REDIS_PASSWORD", "value": os.environ["REDIS_PASSWORD"]})
    if influx.url:
        env += [
            {"name": "INFLUX_URL", "value": influx.url},
            {"name": "INFLUX_BUCKET", "value": influx.bucket},
            {"name": "INFLUX_ORG", "value": influx.org},
        ]
        if settings.influx_secret:
            env.append(
                {
                    "name": "INFLUX_TOKEN",
                    "valueFrom": {
                        "secretKeyRef": {"name": settings.influx_secret, "key": "influx-token"}
                    },
                }
            )
    config = OperatorConfig(
        peering_lifetime_s=settings.peering_lifetime_s,
        clusterwide=args.all_namespaces,
        redis_url=redis_settings.effective_url(),
        redis_cluster=redis_settings.cluster,
        worker=WorkerDefaults(
            image=settings.worker_image,
            resources=json.loads(settings.worker_resources),
            drain_timeout_s=settings.worker_drain_timeout_s,
            grace_period_s=settings.worker_grace_period_s,
            env=tuple(env),
        ),
    )
    stop = asyncio.Event()
    probes_at = load(ProbeSettings)
    probes = ProbeServer(
        registry=config.metrics.registry, ready=lambda: {"operator": not stop.is_set()}
    )
    await probes.start_or_warn(probes_at.host, probes_at.port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "watching %s", "every namespace" if args.all_namespaces else f"namespace {args.namespace}"
    )
    await kopf.operator(
        registry=build_registry(config),
        clusterwide=args.all_namespaces,
        namespaces=[] if args.all_namespaces else [args.namespace],
        standalone=not settings.peering,
        peering_name=PEERING_NAME if settings.peering else None,
        # Peers of equal priority all pause (kopf's rule); distinct ones make one the leader
        # and the other its standby, which takes over when the leader's lease lapses.
        priority=(
            settings.priority if settings.priority is not None else secrets.randbelow(1 << 30)
        ),
        stop_flag=stop,
    )
    await probes.stop()
    return 0
