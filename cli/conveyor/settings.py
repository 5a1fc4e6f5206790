"""Settings from the environment, validated once at start by pydantic-settings.

Only entry points build these; the libraries take plain arguments. A bad value stops the
command with a message that names the variable and says what it should be.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class SettingsError(Exception):
    """A configuration value that cannot be used; the message names the variable."""


class RedisSettings(BaseSettings):
    """``REDIS_URL``, or ``REDIS_HOST``/``REDIS_PORT``/``REDIS_PASSWORD``/``REDIS_DB``."""

    model_config = SettingsConfigDict(env_prefix="REDIS_", extra="ignore")

    url: str | None = Field(default=None, description="e.g. redis://:pass@host:6379/0")
    host: str = "localhost"
    port: int = Field(default=6379, ge=1, le=65535)
    password: SecretStr | None = None
    db: int = Field(default=0, ge=0, le=15)
    cluster: bool = Field(default=False, description="Connect to a Redis Cluster")

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    def effective_url(self) -> str:
        if self.url:
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
        else:
            shown = f"={given}" if isinstance(given, str) else f"={given!r}"
        problems.append(f"{var}{shown}: {err['msg']}")
    return "invalid configuration: " + "; ".join(problems)
