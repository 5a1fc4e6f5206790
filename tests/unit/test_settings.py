"""Settings from the environment: a bad value names the variable; secrets stay hidden."""

from __future__ import annotations

import pytest

from conveyor.settings import InfluxSettings, RedisSettings, SettingsError, load


def test_url_from_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis.conveyor.svc")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "p@ss/word")
    assert load(RedisSettings).effective_url() == "redis://:p%40ss%2Fword@redis.conveyor.svc:6380/0"


def test_password_from_a_secret_joins_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    assert load(RedisSettings).effective_url() == "redis://:s3cret@redis:6379/0"


def test_url_wins_over_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/2")
    monkeypatch.setenv("REDIS_HOST", "ignored")
    assert load(RedisSettings).effective_url() == "redis://elsewhere:1/2"


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("REDIS_PORT", "abc", "REDIS_PORT=abc: Input should be a valid integer"),
        ("REDIS_PORT", "70000", "REDIS_PORT=70000: Input should be less than"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL=localhost:6379: Value error, must start with"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(RedisSettings)


def test_password_never_appears_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("REDIS_DB", "99")
    with pytest.raises(SettingsError) as info:
        load(RedisSettings)
    assert "hunter2" not in str(info.value)
    assert "REDIS_DB=99" in str(info.value)


def test_an_empty_influx_url_means_no_influx(monkeypatch: pytest.MonkeyPatch) -> None:
    # The chart passes INFLUX_URL="" when influx.url is left blank (found on kind).
    monkeypatch.setenv("INFLUX_URL", "")
    assert load(InfluxSettings).url is None
    monkeypatch.setenv("INFLUX_URL", "influxdb:8086")
    with pytest.raises(SettingsError, match="INFLUX_URL=influxdb:8086: Value error, must start"):
        load(InfluxSettings)
