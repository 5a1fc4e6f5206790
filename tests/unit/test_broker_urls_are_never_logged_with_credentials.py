"""A broker URL that carries a user and password never shows them: not in the messages of a
bad setting, not in the ingestor's configuration errors, not where the services log it, not in
the REDIS_URL the operator gives its workers; passwords with ``/ ? # @ :`` in them (unescaped)
included."""

from __future__ import annotations

import pytest
from conveyor_ingestor import BrokerConfigError
from conveyor_ingestor.broker import broker_config

from conveyor.operator_command import OperatorSettings, worker_env
from conveyor.settings import (
    InfluxSettings,
    MqttSettings,
    RedisSettings,
    SettingsError,
    load,
    redact_url,
)

SECRET = "pl4nt-s3cret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"mqtt://ingestor:{SECRET}@broker:1883", "mqtt://***@broker:1883"),
        (f"mqtts://:{SECRET}@broker/x", "mqtts://***@broker/x"),
        (f"redis://:{SECRET}@redis:6379/0", "redis://***@redis:6379/0"),
        ("mqtt://broker:1883", "mqtt://broker:1883"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("broker:1883", "broker:1883"),
        # An @ in the path cannot be told from a password with a / in it: hidden up to it.
        ("mqtt://broker/a@b", "mqtt://***@b"),
        ("redis://redis:6379/0?password=" + SECRET, "redis://redis:6379/0?password=***"),
        (
            "redis://redis/0?db=1&PASSWORD=" + SECRET + "&x=1",
            "redis://redis/0?db=1&PASSWORD=***&x=1",
        ),
    ],
)
def test_redact_url_hides_userinfo_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# Unescaped, as people write them: each would end the userinfo early under RFC 3986's rule.
AWKWARD = ["ab/cd", "ab?cd", "ab#cd", "a@b:c", "x:/?#@y", "::@@", "//", "@"]


@pytest.mark.parametrize("password", AWKWARD)
@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("redis://:{}@redis:6379/0", "redis://***@redis:6379/0"),
        ("mqtt://user:{}@broker:1883", "mqtt://***@broker:1883"),
        ("rediss://default:{}@redis", "rediss://***@redis"),
    ],
)
def test_passwords_with_delimiters_are_hidden_whole(
    template: str, shown: str, password: str
) -> None:
    assert redact_url(template.format(password)) == shown


@pytest.mark.parametrize("password", [*AWKWARD, SECRET])
def test_workers_get_a_redis_url_without_the_password(
    monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    for name in ("REDIS_HOST", "REDIS_PASSWORD", "OPERATOR_REDIS_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", f"redis://:{password}@redis.plant:6379/0")
    monkeypatch.setenv("OPERATOR_REDIS_SECRET", "conveyor-redis")
    env = worker_env(
        load(OperatorSettings), load(RedisSettings), load(InfluxSettings), log_format="json"
    )
    assert env[0] == {"name": "REDIS_URL", "value": "redis://redis.plant:6379/0"}
    ref = {"secretKeyRef": {"name": "conveyor-redis", "key": "redis-password"}}
    assert env[-1] == {"name": "REDIS_PASSWORD", "valueFrom": ref}
    # And without a Secret to name, the operator refuses to start rather than copy it.
    monkeypatch.delenv("OPERATOR_REDIS_SECRET")
    with pytest.raises(SettingsError, match="OPERATOR_REDIS_SECRET"):
        worker_env(
            load(OperatorSettings), load(RedisSettings), load(InfluxSettings), log_format="json"
        )


def test_a_password_in_the_query_is_refused_not_copied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://redis.plant:6379/0?password={SECRET}")
    monkeypatch.setenv("OPERATOR_REDIS_SECRET", "conveyor-redis")
    with pytest.raises(SettingsError, match="password= parameter") as refused:
        worker_env(
            load(OperatorSettings), load(RedisSettings), load(InfluxSettings), log_format="json"
        )
    assert SECRET not in str(refused.value)


def test_the_settings_error_and_the_safe_url_hide_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQTT_BROKER_URL", f"tcp://ingestor:{SECRET}@broker:1883")
    with pytest.raises(SettingsError) as refused:
        load(MqttSettings)
    assert "MQTT_BROKER_URL=tcp://***@broker:1883" in str(refused.value)
    assert SECRET not in str(refused.value)
    monkeypatch.setenv("MQTT_BROKER_URL", f"mqtt://ingestor:{SECRET}@broker:1883")
    assert load(MqttSettings).safe_broker_url == "mqtt://***@broker:1883"


@pytest.mark.parametrize(
    "url",
    [
        f"http://ingestor:{SECRET}@broker:1883",
        f"mqtt://ingestor:{SECRET}@broker:port",
    ],
)
def test_the_ingestors_config_errors_hide_the_password(url: str) -> None:
    with pytest.raises(BrokerConfigError) as refused:
        broker_config(url, client_id="c")
    assert "***@broker" in str(refused.value)
    assert SECRET not in str(refused.value)
