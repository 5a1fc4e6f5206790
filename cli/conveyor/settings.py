"""Settings from the environment, validated once at start by pydantic-settings.

Only entry points build these; the libraries take plain arguments. A bad value stops the
command with a message that names the variable and says what it should be.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


def _default_queue(kind: str) -> str:
    """The default queue of a kind of message (conveyor_messages.DEFAULT_QUEUES)."""
    from conveyor_messages import DEFAULT_QUEUES

    return next(q.name for q in DEFAULT_QUEUES if q.kind == kind)


def library_default(where: str, *, scale: float = 1) -> Callable[[], Any]:
    """A default factory reading the default of a library's dataclass field
    (``module:Class.field``), times ``scale`` for another unit: each default is written once,
    in the library, and a command imports only the libraries of the settings it builds."""
    module, _, attribute = where.partition(":")
    cls_name, _, name = attribute.partition(".")

    def factory() -> Any:
        fields = getattr(importlib.import_module(module), cls_name).__dataclass_fields__
        value = fields[name].default
        if value is dataclasses.MISSING:
            raise TypeError(f"{where} has no plain default to read")
        return round(value * scale, 9) if scale != 1 else value

    return factory


class SettingsError(Exception):
    """A configuration value that cannot be used; the message names the variable."""


_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def split_credentials(url: str) -> tuple[str, str | None, str]:
    """``url`` as ``(scheme://, userinfo or None, the rest)``, for redacting or removing the
    credentials.

    The userinfo ends at the *last* ``@``, not at the first ``/``, ``?`` or ``#`` as RFC 3986
    has it: people write passwords with those characters unescaped, and a password must never
    be taken for a host or a path. The price: an ``@`` in a path or query
    (``mqtt://broker/a@b``) is taken for the end of a userinfo, so more is hidden than need be.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, None, ""
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return scheme + sep, None, rest
    return scheme + sep, userinfo, after


def redact_url(url: str) -> str:
    """``url`` with its user and password (if any) replaced by ``***``, and a ``password=``
    query value by ``***``, for messages and logs."""
    start, userinfo, rest = split_credentials(url)
    if not rest and userinfo is None:
        return url
    shown = f"{start}***@{rest}" if userinfo is not None else start + rest
    return _QUERY_PASSWORD.sub(r"\1***", shown)


class RedisSettings(BaseSettings):
    """``REDIS_URL``, or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_PASSWORD``/``REDIS_DB``."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", extra="ignore")

    url: str | None = Field(
        default=None,
        description="the Redis holding the queues: `redis://`, `rediss://` (TLS) or `unix://`, "
        "e.g. `redis://:pass@host:6379/0`; when set, `REDIS_HOST`, `REDIS_PORT` and `REDIS_DB` "
        "are ignored",
    )
    host: str = Field(default="localhost", description="Redis host, when `REDIS_URL` is unset")
    port: int = Field(
        default=6379, ge=1, le=65535, description="Redis port, when `REDIS_URL` is unset"
    )
    password: SecretStr | None = Field(
        default=None,
        description="Redis password; joins a `REDIS_URL` that has none (so the URL can be a plain "
        "value and the password a secret)",
    )
    db: int = Field(default=0, ge=0, le=15, description="Redis database, when `REDIS_URL` is unset")
    cluster: bool = Field(default=False, description="connect to a Redis Cluster")
    startup_wait_s: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="how long `conveyor work` and `conveyor gateway` wait for Redis at start "
        "before they exit with code 3; each try is logged with the address",
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    def effective_url(self) -> str:
        if self.url:
            # A password kept in a secret (REDIS_PASSWORD) joins a URL that has none.
            scheme, sep, rest = self.url.partition("://")
            if self.password and "@" not in rest and scheme != "unix":
                secret = quote(self.password.get_secret_value(), safe="")
                return f"{scheme}{sep}:{secret}@{rest}"
            return self.url
        auth = f":{quote(self.password.get_secret_value(), safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/{self.db}"


def load(cls: type[S], **overrides: Any) -> S:
    """Build ``cls`` from the environment, turning validation errors into SettingsError."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe(cls, exc)) from exc


def describe(cls: type[BaseSettings], exc: ValidationError) -> str:
    prefix = str(cls.model_config.get("env_prefix", ""))
    problems = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        var = (prefix + field).upper()
        given = err.get("input")
        if "password" in field or "token" in field:
            shown = ""  # never echo a secret
        elif isinstance(given, str) and "://" in given:
            shown = f"={redact_url(given)}"  # nor one inside a URL
        else:
            shown = f"={given}" if isinstance(given, str) else f"={given!r}"
        problems.append(f"{var}{shown}: {err['msg']}")
    return "invalid configuration: " + "; ".join(problems)


class MqttSettings(BaseSettings):
    """``MQTT_BROKER_URL`` and the MQTT client options, all ``MQTT_*``."""

    model_config = SettingsConfigDict(env_prefix="MQTT_", extra="ignore")

    broker_url: str = Field(
        default="mqtt://localhost:1883", description="the broker: `mqtt://` or `mqtts://` (TLS)"
    )
    username: str | None = Field(default=None, description="broker user name")
    password: SecretStr | None = Field(default=None, description="broker password")
    password_file: Path | None = Field(
        default=None, description="a file holding the broker password (a mounted secret)"
    )
    ca_file: Path | None = Field(default=None, description="CA certificate for `mqtts://`")
    cert_file: Path | None = Field(default=None, description="client certificate for `mqtts://`")
    key_file: Path | None = Field(default=None, description="client key for `mqtts://`")
    client_id: str | None = Field(
        default=None,
        description="MQTT client id; keep it stable, so the persistent session survives a "
        "restart; default: `conveyor-ingestor-<hostname>`",
    )
    share_group: str | None = Field(
        default=None,
        description="subscribe as `$share/<group>/<filter>`, so replicas split the load (each "
        "with its own `MQTT_CLIENT_ID`)",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default_factory=library_default("conveyor_ingestor.broker:BrokerConfig.protocol"),
        description="MQTT version; 3.1.1 uses `clean_session=false`",
    )
    keepalive: int = Field(
        default_factory=library_default("conveyor_ingestor.broker:BrokerConfig.keepalive"),
        ge=5,
        le=3600,
        description="MQTT keepalive, seconds",
    )
    session_expiry_s: int = Field(
        default_factory=library_default("conveyor_ingestor.broker:BrokerConfig.session_expiry_s"),
        ge=0,
        description="MQTT 5: how long the broker keeps the ingestor's session (and its messages) "
        "while it is away",
    )
    receive_maximum: int = Field(
        default_factory=library_default("conveyor_ingestor.broker:BrokerConfig.receive_maximum"),
        ge=1,
        le=65535,
        description="MQTT 5 receive window: QoS 1 messages the broker sends before they are "
        "acknowledged; bounds what the ingestor holds",
    )

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if not value.startswith(("mqtt://", "mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://, e.g. mqtt://localhost:1883")
        return value

    @field_validator("password_file", "ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @property
    def safe_broker_url(self) -> str:
        """The broker URL without credentials, for messages and logs."""
        return redact_url(self.broker_url)

    def secret(self) -> str | None:
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return None


class IngestSettings(BaseSettings):
    """The ingestor's own options, all ``INGEST_*``."""

    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore")

    routes: str | None = Field(
        default=None,
        description='routing table as JSON: `[{"filter": "+/realtime", "queue": "mqtt_realtime", '
        '"kind": "realtime"}, ...]`, first match wins; a route\'s optional "priority" '
        "(-1000..1000) overrides its queue's default_priority; unset: the default routes",
    )
    routes_file: Path | None = Field(default=None, description="routing table as a JSON file")
    batch_size: int = Field(
        default_factory=library_default("conveyor_ingestor.ingesting:IngestOptions.batch_size"),
        ge=1,
        le=10_000,
        description="most messages enqueued in one script call",
    )
    flush_ms: float = Field(
        default_factory=library_default(
            "conveyor_ingestor.ingesting:IngestOptions.flush_interval", scale=1000
        ),
        ge=0,
        le=1000,
        description="longest wait, ms, for a batch to fill",
    )
    max_payload_bytes: int = Field(
        default_factory=library_default(
            "conveyor_ingestor.ingesting:IngestOptions.max_payload_bytes"
        ),
        ge=64,
        le=64 * 1024 * 1024,
        description="larger payloads go to `dead:ingest` as oversized; with MQTT 5 the broker is "
        "told a Maximum Packet Size of this + 68 KiB",
    )
    dead_max_count: int = Field(
        default_factory=library_default("conveyor_ingestor.ingesting:IngestOptions.dead_max_count"),
        ge=1,
        le=100_000_000,
        description="most letters kept in `dead:ingest`",
    )
    dead_max_bytes: int = Field(
        default_factory=library_default("conveyor_ingestor.ingesting:IngestOptions.dead_max_bytes"),
        ge=1024 * 1024,  # far above one letter (4 KiB of payload, 1 KiB of topic, the error)
        le=16 * 1024**3,
        description="most bytes of `dead:ingest` (payloads, errors, ids, per-letter overhead)",
    )
    inbox_max_messages: int = Field(
        default_factory=library_default("conveyor_ingestor.broker:BrokerConfig.inbox_max_messages"),
        ge=1,
        le=10_000_000,
        description="QoS 0 dropped beyond this backlog",
    )
    inbox_max_bytes: int = Field(
        default_factory=library_default("conveyor_ingestor.broker:BrokerConfig.inbox_max_bytes"),
        ge=64 * 1024,
        le=16 * 1024**3,
        description="QoS 0 dropped beyond this backlog in bytes",
    )
    sparkplug: bool = Field(
        default=False,
        description="ingest Sparkplug B: a route of kind sparkplug for `spBv1.0/#` (or the groups "
        "of INGEST_SPARKPLUG_GROUPS) before the others, into INGEST_SPARKPLUG_QUEUE",
    )
    sparkplug_groups: str = Field(
        default="",
        description="Sparkplug group ids to ingest, comma-separated; empty: every group",
    )
    sparkplug_queue: str = Field(
        default_factory=lambda: _default_queue("realtime"),
        description="queue of the realtime messages Sparkplug B data makes",
    )
    sparkplug_alerts_queue: str = Field(
        default_factory=lambda: _default_queue("alert"),
        description="queue of the `node_offline` alerts of NDEATH and DDEATH",
    )
    sparkplug_rebirth_interval_s: float = Field(
        default_factory=library_default(
            "conveyor_ingestor.sparkplug.sessions:SessionOptions.rebirth_interval_s"
        ),
        ge=1,
        le=3600,
        description="least seconds between two Rebirth requests (NCMD) to one edge node",
    )
    sparkplug_max_parked: int = Field(
        default_factory=library_default(
            "conveyor_ingestor.sparkplug.sessions:SessionOptions.max_parked"
        ),
        ge=1,
        le=100_000,
        description="most messages of one edge node waiting for its rebirth; beyond, the newest "
        "go to `dead:ingest`",
    )
    sparkplug_max_parked_bytes: int = Field(
        default_factory=library_default(
            "conveyor_ingestor.sparkplug.sessions:SessionOptions.max_parked_bytes"
        ),
        ge=64 * 1024,
        le=1024**3,
        description="most payload bytes of one edge node waiting for its rebirth; beyond, the "
        "newest go to `dead:ingest`",
    )
    sparkplug_max_parked_bytes_total: int = Field(
        default_factory=library_default(
            "conveyor_ingestor.sparkplug.sessions:SessionOptions.max_parked_bytes_total"
        ),
        ge=1024 * 1024,
        le=16 * 1024**3,
        description="most payload bytes waiting for rebirths over all edge nodes of this "
        "ingestor (it holds them in memory); beyond, the newest go to `dead:ingest`",
    )
    sparkplug_node_machine: str = Field(
        default_factory=library_default(
            "conveyor_ingestor.sparkplug.sessions:SessionOptions.node_machine"
        ),
        description="machine id of an edge node's own metrics, from `{group}` and `{node}`",
    )
    sparkplug_device_machine: str = Field(
        default_factory=library_default(
            "conveyor_ingestor.sparkplug.sessions:SessionOptions.device_machine"
        ),
        description="machine id of a device's metrics, from `{group}`, `{node}` and `{device}`",
    )
    sparkplug_standby_bytes: int = Field(
        default_factory=library_default(
            "conveyor_ingestor.sparkplug.handling:SparkplugOptions.standby_max_bytes"
        ),
        ge=1024 * 1024,
        le=16 * 1024**3,
        description="most payload bytes this replica keeps in memory of the edge nodes other "
        "replicas handle (their last 30 s), to take them over without a loss should one stop "
        "or die; beyond, the oldest are dropped",
    )
    sparkplug_host_id: str = Field(
        default="",
        pattern=r"^[^/+#\s]*$",
        description="publish the primary host STATE `spBv1.0/STATE/<this id>` (retained; the "
        "broker must keep retained messages), so that edge nodes configured with it publish "
        "only while Conveyor is online; only replica 0 (INGEST_REPLICA_INDEX) publishes it; "
        "empty: none",
    )
    replica_index: int = Field(
        default=0,
        ge=0,
        description="this replica's index (the StatefulSet's pod index, which the chart sets): "
        "replica 0 publishes the Sparkplug primary host STATE",
    )

    @field_validator("sparkplug_groups")
    @classmethod
    def _groups(cls, value: str) -> str:
        for group in (g.strip() for g in value.split(",")):
            if re.search(r"[/+#\s]", group):
                raise ValueError(
                    f"{group!r} is not a Sparkplug group id: one topic level, without /, + or #"
                )
        return value

    @model_validator(mode="after")
    def _sparkplug(self) -> IngestSettings:
        for name, template, fields in (
            ("NODE_MACHINE", self.sparkplug_node_machine, ("group", "node")),
            ("DEVICE_MACHINE", self.sparkplug_device_machine, ("group", "node", "device")),
        ):
            try:
                template.format(**{f: f for f in fields})
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"INGEST_SPARKPLUG_{name} {template!r} may use only "
                    f"{', '.join('{' + f + '}' for f in fields)} ({exc!r})"
                ) from exc
        return self


class ProbeSettings(BaseSettings):
    """Where ``/healthz``, ``/readyz`` and ``/metrics`` are served (``PROBE_HOST``, ``_PORT``)."""

    model_config = SettingsConfigDict(env_prefix="PROBE_", extra="ignore")

    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - in a pod the kubelet and Prometheus come from outside
        description="address of `/healthz`, `/readyz` and `/metrics`",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="their port; 0: any free port")


class InfluxSettings(BaseSettings):
    """``INFLUX_URL``, ``INFLUX_TOKEN``, ``INFLUX_ORG``, ``INFLUX_BUCKET``: where the workers
    write points and the gateway's charts read them. For InfluxDB 1.8 the bucket is
    ``<database>/<retention policy>`` and the token ``<user>:<password>``."""

    model_config = SettingsConfigDict(env_prefix="INFLUX_", extra="ignore")

    url: str | None = Field(
        default=None,
        description="e.g. `http://influxdb:8086`; unset or empty: no points are written (said "
        "loudly at start), the other sinks still run, and the gateway's charts answer 503",
    )
    token: SecretStr = Field(
        default=SecretStr(""), description="API token; for InfluxDB 1.8 `<user>:<password>`"
    )
    # Written here as well as in conveyor_worker.influx.InfluxConfig (a test keeps them equal):
    # the operator builds these settings, and reading the worker's would import the InfluxDB
    # and HTTP clients into it.
    org: str = Field(default="-", description="organisation (InfluxDB 1.8 ignores it)")
    bucket: str = Field(
        default="conveyor/autogen",
        description="bucket; for InfluxDB 1.8 `<database>/<retention policy>`",
    )
    timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="timeout of one write request (the gateway: of one chart's read), seconds",
    )

    @field_validator("url", mode="before")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value == "":
            return None  # set but empty, as a chart value left blank: no writes
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://, e.g. http://influxdb:8086")
        return value


class WorkerSettings(BaseSettings):
    """The sinks' options: ``WORKER_*`` and ``ALERT_*``."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    worker_batch_size: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="jobs a built-in processor takes per batch (one InfluxDB write per batch); "
        "unset: the queue's own (`mqtt_realtime` 1000, `mqtt_spc` and `mqtt_tech` 200, "
        "`alerts` 50)",
    )
    worker_cache_ttl_s: int = Field(
        default_factory=library_default("conveyor_worker.processors:SinkSettings.cache_ttl_s"),
        ge=1,
        description="seconds a machine's latest values (`conveyor:latest:{machine}`) outlive its "
        "last realtime message",
    )
    worker_machine_ttl_s: int = Field(
        default_factory=library_default("conveyor_worker.processors:SinkSettings.machine_ttl_s"),
        ge=60,
        description="seconds a machine's SPC windows and tech configuration outlive its last "
        "message (each message renews them)",
    )
    worker_spc_window: int = Field(
        default_factory=library_default("conveyor_worker.processors:SinkSettings.spc_window"),
        ge=10,
        le=10_000,
        description="SPC points kept per machine and characteristic",
    )
    worker_spc_min_points: int = Field(
        default_factory=library_default("conveyor_worker.processors:SinkSettings.spc_min_points"),
        ge=2,
        le=10_000,
        description="SPC points needed before control limits are computed and rules checked",
    )
    alert_webhooks: str = Field(
        default="",
        description="comma-separated http(s) URLs to POST alerts to (JSON); an error answer "
        "retries the job",
    )
    alert_webhook_timeout_s: float = Field(
        default_factory=library_default(
            "conveyor_worker.processors:SinkSettings.webhook_timeout_s"
        ),
        ge=0.1,
        le=300,
        description="seconds one webhook call may take; past it the alert's job is retried. "
        "Keep it below the worker's drain timeout (20 s): a call still running when that ends "
        "is cut short, and the alert is posted again",
    )
    alert_suppress_s: float = Field(
        default_factory=library_default("conveyor_worker.processors:SinkSettings.alert_suppress_s"),
        ge=1,
        description="repeats of one alert type per machine within this many seconds are folded "
        "into the first",
    )
    alert_history_max: int = Field(
        default_factory=library_default(
            "conveyor_worker.processors:SinkSettings.alert_history_max"
        ),
        ge=1,
        description="alerts kept in the stream `conveyor:alerts:history`",
    )

    @field_validator("alert_webhooks")
    @classmethod
    def _urls(cls, value: str) -> str:
        for url in filter(None, (u.strip() for u in value.split(","))):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return value

    def webhooks(self) -> tuple[str, ...]:
        return tuple(filter(None, (u.strip() for u in self.alert_webhooks.split(","))))


class GatewaySettings(BaseSettings):
    """The gateway's options, all ``GATEWAY_*``. Reads and the stream are open unless
    ``GATEWAY_READ_AUTH`` / ``GATEWAY_STREAM_AUTH`` say otherwise (the Helm chart turns both on);
    either one without ``GATEWAY_API_TOKEN`` is refused at start."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - in a pod the Service comes from outside
        description="address the gateway listens on",
    )
    port: int = Field(default=8000, ge=0, le=65535, description="its port; 0: any free port")
    api_token: SecretStr | None = Field(
        default=None, description="bearer token for replay and delete (and reads, the stream)"
    )
    read_auth: bool = Field(
        default=False, description="require the token for reads: stats, machines, dead letters"
    )
    stream_auth: bool = Field(default=False, description="require the token on `/ws` as well")
    allowed_origins: str = Field(
        default="",
        description="comma-separated origins besides the gateway's own that may open `/ws`; "
        "`*`: any",
    )
    max_connections: int = Field(
        default_factory=library_default("conveyor_gateway.config:GatewayConfig.max_connections"),
        ge=1,
        le=1_000_000,
        description="open WebSocket connections at most",
    )
    client_buffer: int = Field(
        default_factory=library_default("conveyor_gateway.config:GatewayConfig.client_buffer"),
        ge=10,
        le=1_000_000,
        description="messages a WebSocket client may lag",
    )
    client_buffer_bytes: int = Field(
        default_factory=library_default(
            "conveyor_gateway.config:GatewayConfig.client_buffer_bytes"
        ),
        ge=64 * 1024,
        le=1024 * 1024 * 1024,
        description="bytes a WebSocket client may lag",
    )

    @field_validator("api_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. openssl rand -hex 16)")
        return value

    @field_validator("read_auth", "stream_auth")
    @classmethod
    def _token_given(cls, value: bool, info: ValidationInfo) -> bool:
        # api_token is validated first (declared first); absent from data when it was invalid.
        if value and "api_token" in info.data and info.data["api_token"] is None:
            raise ValueError("requires the token: set GATEWAY_API_TOKEN (16+ characters)")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        for origin in filter(None, (o.strip() for o in value.split(","))):
            scheme, sep, rest = origin.partition("://")
            if origin != "*" and (
                scheme not in ("http", "https") or not sep or not rest or "/" in rest.rstrip("/")
            ):
                raise ValueError(f"{origin!r} is not an origin: use scheme://host[:port] or *")
        return value

    def origins(self) -> tuple[str, ...]:
        return tuple(filter(None, (o.strip() for o in self.allowed_origins.split(","))))
