"""A broker URL that carries a user and password never shows them: not in the messages of a
bad setting, not in the ingestor's configuration errors, not where the services log it."""

from __future__ import annotations

import pytest
from conveyor_ingestor import BrokerConfigError
from conveyor_ingestor.broker import broker_config

from conveyor.settings import MqttSettings, SettingsError, load, redact_url

SECRET = "pl4nt-s3cret"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"mqtt://ingestor:{SECRET}@broker:1883", "mqtt://***@broker:1883"),
        (f"mqtts://:{SECRET}@broker/x", "mqtts://***@broker/x"),
        (f"redis://:{SECRET}@redis:6379/0", "redis://***@redis:6379/0"),
        ("mqtt://broker:1883", "mqtt://broker:1883"),
        ("mqtt://broker/a@b", "mqtt://broker/a@b"),  # an @ in the path is not userinfo
    ],
)
def test_redact_url_hides_userinfo_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


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
