"""Headless Chromium for the dashboard's tests: Debian's chromium driven by Playwright (which
never downloads a browser here), and a watch on the page for script errors and
Content-Security-Policy violations."""

from __future__ import annotations

import os
import shutil

import pytest
from playwright.sync_api import ConsoleMessage, Page

from tests.helpers import ROOT

ARTIFACTS = ROOT / "test-artifacts"
# As root, in a sandbox, and with no network beyond loopback: no sandbox, no background calls.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed: run hack/bootstrap.sh (or apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def watch(page: Page) -> list[str]:
    """Script errors and Content-Security-Policy violations on the page, as they happen."""
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", console)
    return problems
