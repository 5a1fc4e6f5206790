"""``conveyor operator`` with a Redis password but no Secret to name for the workers refuses
to start, in one line that says which variable to set and never shows the password."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli

SECRET = "n0t-f0r-w0rkers"


@pytest.mark.parametrize(
    ("env", "given"),
    [
        ({"REDIS_PASSWORD": SECRET}, "REDIS_PASSWORD is set"),
        ({"REDIS_URL": f"redis://:{SECRET}@127.0.0.1:1/0"}, "the password in REDIS_URL is set"),
    ],
)
def test_a_password_without_operator_redis_secret_stops_the_operator(
    env: dict[str, str], given: str
) -> None:
    done = run_cli("operator", "--namespace", "x", KUBECONFIG="/nonexistent", **env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert given in lines[0]
    assert "set OPERATOR_REDIS_SECRET" in lines[0]
    assert SECRET not in done.stderr + done.stdout
