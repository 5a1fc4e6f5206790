"""Each setting's default is its library's: read from the library's dataclass
(``settings.library_default``), or, where reading it would import too much into a command (the
InfluxDB settings, which the operator builds), written twice and held equal here."""

from __future__ import annotations

import dataclasses

import pytest
from conveyor_worker.influx import InfluxConfig

from conveyor.settings import InfluxSettings, library_default


def test_the_influx_defaults_are_the_sinks() -> None:
    settings, config = InfluxSettings(), InfluxConfig(url="http://x", bucket="b")
    assert (settings.org, settings.timeout_s) == (config.org, config.timeout_s)


def test_a_library_default_is_read_scaled_and_a_missing_one_refused() -> None:
    flush = library_default("conveyor_ingestor.ingesting:IngestOptions.flush_interval", scale=1000)
    assert flush() == 5.0
    with pytest.raises(TypeError, match="no plain default"):
        library_default("conveyor_worker.influx:InfluxConfig.url")()


def test_every_library_default_names_a_field_that_exists() -> None:
    from conveyor import settings

    for cls in (
        settings.MqttSettings,
        settings.IngestSettings,
        settings.WorkerSettings,
        settings.GatewaySettings,
    ):
        for name, field in cls.model_fields.items():
            if field.default_factory is not None:
                value = field.get_default(call_default_factory=True)
                assert value is not dataclasses.MISSING, (cls.__name__, name)
