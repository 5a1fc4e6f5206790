"""The environment the operator gives every worker: Redis and InfluxDB credentials only by
reference to Secrets, a REDIS_URL without a password, the chart's log format; and an operator
that has a Redis password but no Secret to name refuses to start, saying what to set."""

from __future__ import annotations

import pytest

from conveyor.operator_command import OperatorSettings, worker_env
from conveyor.settings import InfluxSettings, RedisSettings, SettingsError, load

SECRET = "s3cr3t-pa55"


def _env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> dict[str, dict[str, object]]:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    env = worker_env(
        load(OperatorSettings), load(RedisSettings), load(InfluxSettings), log_format="json"
    )
    return {str(e["name"]): e for e in env}


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("REDIS_", "OPERATOR_", "INFLUX_")):
            monkeypatch.delenv(name)


def test_the_password_reaches_workers_by_reference_only(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(
        monkeypatch,
        REDIS_URL=f"redis://:{SECRET}@redis.plant:6379/0",
        OPERATOR_REDIS_SECRET="conveyor-redis",
        OPERATOR_REDIS_SECRET_KEY="password",
    )
    assert env["REDIS_URL"] == {"name": "REDIS_URL", "value": "redis://redis.plant:6379/0"}
    assert env["REDIS_PASSWORD"] == {
        "name": "REDIS_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "conveyor-redis", "key": "password"}},
    }
    assert SECRET not in repr(env)
    assert env["CONVEYOR_LOG_FORMAT"]["value"] == "json"


def test_a_password_from_redis_password_is_not_copied_either(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _env(
        monkeypatch,
        REDIS_HOST="redis.plant",
        REDIS_PASSWORD=SECRET,
        OPERATOR_REDIS_SECRET="conveyor-redis",
    )
    assert env["REDIS_URL"]["value"] == "redis://redis.plant:6379/0"
    assert env["REDIS_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "conveyor-redis", "key": "redis-password"}
    }
    assert SECRET not in repr(env)


@pytest.mark.parametrize(
    ("variables", "given"),
    [
        ({"REDIS_PASSWORD": SECRET}, "REDIS_PASSWORD is set"),
        ({"REDIS_URL": f"redis://:{SECRET}@r:6379/0"}, "the password in REDIS_URL is set"),
    ],
)
def test_a_password_without_a_secret_to_name_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], given: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        _env(monkeypatch, **variables)
    message = str(refused.value)
    assert given in message
    assert "set OPERATOR_REDIS_SECRET" in message
    assert "\n" not in message
    assert SECRET not in message


def test_without_a_password_nothing_is_referenced(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(monkeypatch, REDIS_URL="redis://127.0.0.1:6379/0")
    assert "REDIS_PASSWORD" not in env
    assert env["REDIS_URL"]["value"] == "redis://127.0.0.1:6379/0"


def test_the_influx_token_key_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(
        monkeypatch,
        INFLUX_URL="http://influx:8086",
        OPERATOR_INFLUX_SECRET="influx",
        OPERATOR_INFLUX_SECRET_KEY="token",
    )
    assert env["INFLUX_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "influx", "key": "token"}}


def test_installer_lists_are_parsed_as_helm_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor.operator_command import _names

    monkeypatch.setenv("OPERATOR_ALLOWED_IMAGES", '["registry.example.com/team/"]')
    monkeypatch.setenv("OPERATOR_ALLOWED_TOLERATIONS", '[{"key": "gpu", "operator": "Exists"}]')
    monkeypatch.setenv("OPERATOR_ALLOWED_NODE_SELECTORS", '{"zone": ["a", "b"]}')
    monkeypatch.setenv("OPERATOR_MAX_REPLICAS_CEILING", "20")
    monkeypatch.setenv("OPERATOR_ALLOWED_PRIORITY_CLASSES", '["conveyor-alerts"]')
    allowances = load(OperatorSettings).allowances()
    assert allowances.images == ("registry.example.com/team/",)
    assert allowances.tolerations == ({"key": "gpu", "operator": "Exists"},)
    assert allowances.node_selectors == {"zone": ("a", "b")}
    assert allowances.max_replicas_ceiling == 20
    assert allowances.priority_classes == ("conveyor-alerts",)
    assert _names('[{"name": "regcred"}, {"name": "other"}]') == ["regcred", "other"]
    assert _names("regcred, other") == ["regcred", "other"]
    monkeypatch.setenv("OPERATOR_ALLOWED_IMAGES", "*")
    with pytest.raises(SettingsError, match="OPERATOR_ALLOWED_IMAGES"):
        load(OperatorSettings)
