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
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from conveyor import __version__
from conveyor.probes import ProbeServer
from conveyor.settings import (
    InfluxSettings,
    ProbeSettings,
    RedisSettings,
    SettingsError,
    load,
    split_credentials,
)

if TYPE_CHECKING:
    from conveyor_operator.allowances import Allowances
    from conveyor_operator.rendering import WorkerDefaults

log = logging.getLogger(__name__)

PEERING_NAME = "conveyor-operator"
"""The KopfPeering object an HA pair shares (the chart creates it)."""


class OperatorSettings(BaseSettings):
    """``OPERATOR_*`` (the chart sets them) and ``WATCH_NAMESPACE``."""

    model_config = SettingsConfigDict(env_prefix="OPERATOR_", extra="ignore")

    worker_image: str = Field(
        default=f"conveyor:{__version__}",
        min_length=1,
        description="image of worker pods, and the one a MessageQueue may always name",
    )
    worker_image_pull_policy: Literal["", "Always", "IfNotPresent", "Never"] = Field(
        default="", description="worker pods' imagePullPolicy; empty: the cluster's default"
    )
    worker_resources: str = Field(default="{}", description="JSON resources of worker pods")
    worker_labels: str = Field(
        default="{}",
        description="JSON object of extra labels on worker Deployments and pods (the chart's "
        "commonLabels); the operator's own labels win",
    )
    worker_drain_timeout_s: int = Field(
        default=20, ge=1, description="worker pods' `--drain-timeout`, seconds"
    )
    worker_grace_period_s: int = Field(
        default=30,
        ge=1,
        description="worker pods' terminationGracePeriodSeconds; keep it above the drain timeout",
    )
    worker_service_account: str = Field(
        default="", description="ServiceAccount of worker pods; empty: the namespace's default"
    )
    release: str = Field(default="", description="Helm release: label `conveyor.io/release`")
    redis_secret: str = Field(default="", description="Secret holding the Redis password")
    redis_secret_key: str = Field(
        default="redis-password", min_length=1, description="its key holding the password"
    )
    influx_secret: str = Field(
        default="", description="Secret holding the InfluxDB token for worker pods"
    )
    influx_secret_key: str = Field(
        default="influx-token", min_length=1, description="its key holding the token"
    )
    image_pull_secrets: str = Field(
        default="",
        description='for worker pods: JSON `[{"name": ...}]` or comma-separated names',
    )
    allowed_images: str = Field(
        default="", description="image prefixes MessageQueues may use: JSON list or commas"
    )
    allowed_handlers: str = Field(
        default="", description="module prefixes of MessageQueues' handlers: JSON list or commas"
    )
    allowed_tolerations: str = Field(default="[]", description="JSON list of tolerations")
    allowed_node_selectors: str = Field(
        default="{}", description="JSON object: node label → list of allowed values"
    )
    allowed_priority_classes: str = Field(
        default="", description="PriorityClasses worker pods may use: JSON list or commas"
    )
    max_replicas_ceiling: int = Field(
        default=50, ge=1, le=1000, description="the highest maxReplicas a MessageQueue may ask for"
    )
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
        if not isinstance(_parse_json(value), dict):
            raise ValueError("must be a JSON object")
        return value

    @field_validator("worker_labels")
    @classmethod
    def _labels(cls, value: str) -> str:
        labels = _parse_json(value)
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValueError('must be a JSON object of label -> text, e.g. {"team": "line-3"}')
        return value

    @field_validator("image_pull_secrets", "allowed_priority_classes")
    @classmethod
    def _names(cls, value: str) -> str:
        for name in _names(value):
            if not name or any(c.isspace() or c == "*" for c in name):
                raise ValueError(f"{name!r}: write names without spaces or '*'")
        return value

    @field_validator("allowed_images", "allowed_handlers")
    @classmethod
    def _prefixes(cls, value: str, info: ValidationInfo) -> str:
        from conveyor_operator.allowances import handler_prefix_problem, image_prefix_problem

        check = (
            image_prefix_problem
            if info.field_name == "allowed_images"
            else (handler_prefix_problem)
        )
        problems = [p for p in map(check, _names(value)) if p]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("allowed_tolerations")
    @classmethod
    def _tolerations(cls, value: str) -> str:
        parsed = _parse_json(value)
        if not isinstance(parsed, list) or not all(isinstance(t, dict) for t in parsed):
            raise ValueError("must be a JSON list of tolerations (objects)")
        return value

    @field_validator("allowed_node_selectors")
    @classmethod
    def _node_selectors(cls, value: str) -> str:
        parsed = _parse_json(value)
        if not isinstance(parsed, dict) or not all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in parsed.values()
        ):
            raise ValueError('must be a JSON object of lists, e.g. {"zone": ["a", "b"]}')
        return value

    def allowances(self) -> Allowances:
        from conveyor_operator.allowances import Allowances

        selectors = json.loads(self.allowed_node_selectors)
        return Allowances(
            worker_image=self.worker_image,
            images=tuple(_names(self.allowed_images)),
            handlers=tuple(_names(self.allowed_handlers)),
            tolerations=tuple(json.loads(self.allowed_tolerations)),
            node_selectors={k: tuple(v) for k, v in selectors.items()},
            priority_classes=tuple(_names(self.allowed_priority_classes)),
            max_replicas_ceiling=self.max_replicas_ceiling,
        )


def _parse_json(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not JSON: {exc}") from exc


def _names(value: str) -> list[str]:
    """A JSON list (of strings or of ``{"name": ...}``, as Helm's ``toJson`` writes
    imagePullSecrets) or comma-separated names."""
    value = value.strip()
    if not value.startswith("["):
        return [n.strip() for n in value.split(",") if n.strip()]
    items = _parse_json(value)
    if not isinstance(items, list):
        raise ValueError("must be a JSON list")
    return [str(i.get("name", "")) if isinstance(i, dict) else str(i) for i in items]


def worker_env(
    settings: OperatorSettings,
    redis: RedisSettings,
    influx: InfluxSettings,
    *,
    log_format: str,
) -> list[dict[str, Any]]:
    """The environment every worker pod gets: no secret in it, only references to Secrets.

    Raises SettingsError when the operator has a Redis password but no Secret to name: the
    password would otherwise have to be written into every worker Deployment.
    """
    if "password=" in split_credentials(redis.url or "")[2].lower():
        raise SettingsError(
            "REDIS_URL has a password= parameter, which would be copied into every worker "
            "Deployment: give the password as REDIS_PASSWORD or in the URL's userinfo instead"
        )
    has_password = redis.password is not None or _has_password(redis.url or "")
    if has_password and not settings.redis_secret:
        given = "REDIS_PASSWORD" if redis.password is not None else "the password in REDIS_URL"
        raise SettingsError(
            f"{given} is set but OPERATOR_REDIS_SECRET is not: set OPERATOR_REDIS_SECRET (and "
            "OPERATOR_REDIS_SECRET_KEY) to the Secret that holds the Redis password, so workers "
            "get it by reference"
        )
    env: list[dict[str, Any]] = [
        {"name": "REDIS_URL", "value": _without_userinfo(redis.url or _plain_url(redis))},
        {"name": "REDIS_CLUSTER", "value": str(redis.cluster).lower()},
        {"name": "PROBE_PORT", "value": "8080"},
        {"name": "CONVEYOR_LOG_FORMAT", "value": log_format},
    ]
    if settings.redis_secret:
        ref = {"name": settings.redis_secret, "key": settings.redis_secret_key}
        env.append({"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": ref}})
    if influx.url:
        env += [
            {"name": "INFLUX_URL", "value": influx.url},
            {"name": "INFLUX_BUCKET", "value": influx.bucket},
            {"name": "INFLUX_ORG", "value": influx.org},
        ]
        if settings.influx_secret:
            ref = {"name": settings.influx_secret, "key": settings.influx_secret_key}
            env.append({"name": "INFLUX_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return env


def worker_defaults(settings: OperatorSettings, env: Sequence[Mapping[str, Any]]) -> WorkerDefaults:
    """What every worker Deployment gets from the operator's settings (the chart sets them:
    tests/cluster/test_chart_values_reach_worker_pods.py follows each chart value through)."""
    from conveyor_operator.rendering import WorkerDefaults

    return WorkerDefaults(
        image=settings.worker_image,
        image_pull_policy=settings.worker_image_pull_policy,
        resources=json.loads(settings.worker_resources),
        labels=json.loads(settings.worker_labels),
        drain_timeout_s=settings.worker_drain_timeout_s,
        grace_period_s=settings.worker_grace_period_s,
        env=tuple(env),
        service_account=settings.worker_service_account,
        release=settings.release,
        image_pull_secrets=tuple(_names(settings.image_pull_secrets)),
    )


def _has_password(url: str) -> bool:
    _, userinfo, _ = split_credentials(url)
    return bool(userinfo and userinfo.partition(":")[2])


def _without_userinfo(url: str) -> str:
    """``redis://:secret@host:6379/0`` -> ``redis://host:6379/0`` (a user name goes too: workers
    authenticate as the default user, with the password from the Secret). The userinfo ends at
    the last ``@`` (see :func:`conveyor.settings.split_credentials`), so a password with ``/``,
    ``?``, ``#``, ``:`` or ``@`` in it never reaches a worker's Deployment."""
    start, userinfo, rest = split_credentials(url)
    return url if userinfo is None else start + rest


def _plain_url(redis: RedisSettings) -> str:
    return f"redis://{redis.host}:{redis.port}/{redis.db}"


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
    from kubernetes import config as kube_config

    settings = load(OperatorSettings)
    redis_settings = load(RedisSettings)
    influx = load(InfluxSettings)
    env = worker_env(settings, redis_settings, influx, log_format=args.log_format)
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        try:
            kube_config.load_kube_config()  # type: ignore[no-untyped-call]
        except (kube_config.ConfigException, FileNotFoundError) as exc:
            raise SettingsError(
                f"no Kubernetes credentials: not in a pod and no usable KUBECONFIG ({exc})"
            ) from exc
    config = OperatorConfig(
        peering_lifetime_s=settings.peering_lifetime_s,
        clusterwide=args.all_namespaces,
        redis_url=redis_settings.effective_url(),
        redis_cluster=redis_settings.cluster,
        allowances=settings.allowances(),
        worker=worker_defaults(settings, env),
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
    if stop.is_set():  # stopped while starting; from here on, kopf handles SIGTERM and SIGINT
        await probes.stop()
        return 0
    # No stop_flag for kopf: its own signal handlers replace ours, so the flag would never be
    # set, and kopf waits 5 s at every exit for the task that waits on it.
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
    )
    stop.set()
    await probes.stop()
    return 0
