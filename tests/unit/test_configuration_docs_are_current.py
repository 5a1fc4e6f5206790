"""docs/configuration.md is what hack/configuration_docs.py makes of the settings models: every
field documented with its variable, type, default, bounds and description; a stale file, or a
field without a description, fails and says what to run or write."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "hack" / "configuration_docs.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("configuration_docs", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_docs_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr


def test_a_stale_file_is_refused_with_the_command_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = _script()
    stale = tmp_path / "configuration.md"
    stale.write_text(script.render().replace("`REDIS_URL`", "`REDIS_ADDRESS`"))
    monkeypatch.setattr(script, "DOC", stale)
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--check"])
    with pytest.raises(SystemExit, match=r"stale: run python hack/configuration_docs\.py"):
        script.main()


def test_every_variable_of_the_settings_models_is_documented() -> None:
    from conveyor.operator_command import OperatorSettings
    from conveyor.settings import RedisSettings, WorkerSettings

    text = (ROOT / "docs" / "configuration.md").read_text()
    for model in (RedisSettings, WorkerSettings, OperatorSettings):
        prefix = str(model.model_config.get("env_prefix", ""))
        for name in model.model_fields:
            assert f"| `{(prefix + name).upper()}` |" in text, name
    assert "| `INGEST_DEAD_MAX_BYTES` | integer | `33554432` (32 MiB) |" in text
