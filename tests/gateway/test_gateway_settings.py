"""``conveyor gateway`` refuses to start, with one line naming the variable, when a setting
asks for the token and none is configured (it would lock every client out, or seem to guard
what it does not), and when an allowed origin is not an origin."""

from __future__ import annotations

import pytest
from conveyor_gateway import GatewayConfig

from conveyor.settings import GatewaySettings, SettingsError, load
from tests.gateway.conftest import TOKEN
from tests.helpers import run_cli

GATEWAY_VARS = (
    "GATEWAY_API_TOKEN",
    "GATEWAY_READ_AUTH",
    "GATEWAY_STREAM_AUTH",
    "GATEWAY_ALLOWED_ORIGINS",
    "GATEWAY_MAX_CONNECTIONS",
    "GATEWAY_CLIENT_BUFFER_BYTES",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in GATEWAY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("variable", ["GATEWAY_READ_AUTH", "GATEWAY_STREAM_AUTH"])
def test_auth_without_a_token_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "true")
    with pytest.raises(SettingsError) as refused:
        load(GatewaySettings)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"invalid configuration: {variable}=true: ")
    assert "requires the token: set GATEWAY_API_TOKEN" in message

    monkeypatch.setenv("GATEWAY_API_TOKEN", TOKEN)
    assert getattr(load(GatewaySettings), variable.removeprefix("GATEWAY_").lower()) is True


def test_the_defaults_and_the_new_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(GatewaySettings)
    assert (settings.read_auth, settings.stream_auth) == (False, False)
    assert settings.max_connections == 1_000
    assert settings.client_buffer_bytes == 4 * 1024 * 1024
    assert settings.origins() == ()
    monkeypatch.setenv("GATEWAY_ALLOWED_ORIGINS", "https://a.example, http://b.example:8080")
    assert load(GatewaySettings).origins() == ("https://a.example", "http://b.example:8080")


@pytest.mark.parametrize("origin", ["a.example", "https://a.example/dashboard", "ftp://a"])
def test_an_allowed_origin_must_be_an_origin(monkeypatch: pytest.MonkeyPatch, origin: str) -> None:
    monkeypatch.setenv("GATEWAY_ALLOWED_ORIGINS", origin)
    with pytest.raises(SettingsError, match=r"GATEWAY_ALLOWED_ORIGINS=.*is not an origin"):
        load(GatewaySettings)


def test_the_app_refuses_a_token_requirement_without_a_token() -> None:
    with pytest.raises(ValueError, match="read_requires_token needs an api_token"):
        GatewayConfig(read_requires_token=True)
    with pytest.raises(ValueError, match="stream_requires_token needs an api_token"):
        GatewayConfig(stream_requires_token=True)


def test_the_command_exits_with_one_line() -> None:
    done = run_cli("gateway", GATEWAY_READ_AUTH="true", timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "conveyor: error: invalid configuration: GATEWAY_READ_AUTH=true: Value error, requires "
        "the token: set GATEWAY_API_TOKEN (16+ characters)"
    ]
