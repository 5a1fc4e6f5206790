"""The machine detail page in headless Chromium, over the whole pipeline into a real InfluxDB:
`conveyor simulate --history` publishes two hours of one machine's past over MQTT, the ingestor
and the workers write it, and the page draws the simulator's temperature wave, marks the SPC
shift the worker caught, lists the configuration's changes, and appends a live value. A day of
ten signals is drawn once to measure how long the page takes (printed, not asserted).
Screenshots: test-artifacts/machine-detail.png and machine-detail-day.png."""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Callable

import pytest
from conveyor_worker.points import line
from playwright.sync_api import Page, expect, sync_playwright

from conveyor.local_servers import InfluxServer
from tests.gateway.browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path, watch
from tests.gateway.conftest import REPORT, TOKEN, GatewayProcess
from tests.mqtt import publish
from tests.servers import MosquittoServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
WAVE_RAD_PER_MS = 1 / 300_000  # the simulator's temperature: 60 + 5 sin(t / 300 s + phase) + ...


def _least_squares(columns: list[list[float]], y: list[float]) -> list[float]:
    """The coefficients of ``columns`` that fit ``y`` best (normal equations, Gauss-Jordan)."""
    n = len(columns)
    rows = [
        [sum(a * b for a, b in zip(columns[i], columns[j], strict=True)) for j in range(n)]
        + [sum(a * b for a, b in zip(columns[i], y, strict=True))]
        for i in range(n)
    ]
    for i in range(n):
        pivot = max(range(i, n), key=lambda r: abs(rows[r][i]))
        rows[i], rows[pivot] = rows[pivot], rows[i]
        for r in range(n):
            if r != i:
                factor = rows[r][i] / rows[i][i]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[i], strict=True)]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def _trend(page: Page, signal: str) -> tuple[list[float], list[float]]:
    """The times (s) and means the page's chart of ``signal`` holds."""
    data = page.evaluate("(s) => detail.trends.get(s).data.slice(0, 2)", signal)
    return data[0], data[1]


def test_the_detail_shows_the_simulators_wave_its_spc_shift_and_live_values(
    gateway_process: Callable[..., GatewayProcess],
    simulated_past: str,
    mosquitto: MosquittoServer,
    influx: InfluxServer,
) -> None:
    machine = simulated_past
    gw = gateway_process(
        GATEWAY_API_TOKEN=TOKEN, INFLUX_URL=influx.url, INFLUX_BUCKET=influx.bucket
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors = watch(page)
        page.goto(gw.url)
        card = page.locator(f'[data-machine="{machine}"]')
        expect(card).to_contain_text(" °C", timeout=20_000)  # the values' units
        expect(card).to_contain_text(" bar")
        card.locator("h4 a").click()
        expect(page).to_have_url(f"{gw.url}/#machine/{machine}")
        page.select_option("#detail-window", "86400000")  # the day: all two hours
        temperature = page.locator('figure[data-signal="temperature"]')
        expect(temperature.locator("figcaption")).to_contain_text("temperature (°C)")
        # Two hours in buckets of a day over the chart's width (about 100 s each).
        expect(temperature).to_have_attribute(
            "data-points", re.compile(r"^[5-9]\d$"), timeout=20_000
        )

        # The simulator's wave: a least-squares fit at its frequency finds its amplitude, 5,
        # and leaves only its noise and slow drift.
        times, means = _trend(page, "temperature")
        t = [x * 1000 * WAVE_RAD_PER_MS for x in times]
        middle = sum(t) / len(t)
        columns = [[1.0] * len(t), [math.sin(x) for x in t], [math.cos(x) for x in t]]
        columns.append([x - middle for x in t])
        coef = _least_squares(columns, means)
        fitted = [
            sum(c * col[i] for c, col in zip(coef, columns, strict=True)) for i in range(len(t))
        ]
        residual = statistics.pstdev(m - f for m, f in zip(means, fitted, strict=True))
        amplitude = math.hypot(coef[1], coef[2])
        assert 4.0 < amplitude < 6.0, (amplitude, coef)
        assert residual < 1.5, residual

        # The SPC shifts the simulator makes are caught by the worker and marked on its chart.
        bore = page.locator('figure[data-characteristic="bore_diameter"][data-chart="Xbar-R"]')
        expect(bore).to_be_visible(timeout=20_000)
        expect(bore.locator(".violations li").first).to_contain_text("rule")
        expect(
            page.locator('figure[data-characteristic="bore_diameter"][data-chart="R"]')
        ).to_be_visible()
        expect(page.locator("#detail-changes")).to_contain_text("v1")
        expect(page.locator("#detail-config")).to_contain_text("firmware")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "machine-detail.png"), full_page=True)

        # A value from now on: appended from the live stream, without reloading.
        page.select_option("#detail-window", "3600000")
        expect(page.locator("#live-status")).to_have_text("live", timeout=15_000)
        # An hour of the two (less the seconds since the simulator ran): 3xx points.
        expect(temperature).to_have_attribute(
            "data-points", re.compile(r"^3[0-6]\d$"), timeout=20_000
        )
        payload = f'{{"timestamp": {int(time.time() * 1000)}, "values": {{"temperature": 99.5}}}}'
        publish(mosquitto.port, [(f"{machine}/realtime", payload.encode())])
        expect(temperature.locator("figcaption span")).to_have_text("last 99.50 °C", timeout=20_000)
        browser.close()
    assert errors == [], errors


def test_a_day_of_ten_signals_is_drawn_and_timed(
    gateway_process: Callable[..., GatewayProcess], influx: InfluxServer
) -> None:
    """A day of ten signals at one point per 10 s (86,400 points) into the page's 24 h window:
    the time from asking to every chart drawn is printed."""
    now = int(time.time() * 1000)
    signals = [f"signal_{i:02d}" for i in range(10)]
    steps = range(now - 86_400_000, now, 10_000)
    influx.write(
        [
            line(
                "realtime",
                {"machine": "cell-7", "signal": s},
                {"value": math.sin(t / 3.6e6 + i)},
                t,
            )
            for i, s in enumerate(signals)
            for t in steps
        ]
    )
    gw = gateway_process(
        GATEWAY_API_TOKEN=TOKEN, INFLUX_URL=influx.url, INFLUX_BUCKET=influx.bucket
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        errors = watch(page)
        page.goto(f"{gw.url}/#machine/cell-7")
        expect(page.locator("figure[data-signal]")).to_have_count(10, timeout=20_000)
        timings = []
        for _ in range(3):
            for window in ("3600000", "86400000"):
                page.evaluate("delete document.body.dataset.detailMs")
                page.select_option("#detail-window", window)
                expect(page.locator("body")).to_have_attribute(
                    "data-detail-ms", re.compile(r"^\d+$"), timeout=20_000
                )
            timings.append(int(page.evaluate("document.body.dataset.detailMs")))
        points = [
            int(page.locator(f'figure[data-signal="{s}"]').get_attribute("data-points") or 0)
            for s in signals
        ]
        page.screenshot(path=str(ARTIFACTS / "machine-detail-day.png"), full_page=True)
        browser.close()
    assert errors == [], errors
    assert all(0 < n <= 2000 for n in points), points  # downsampled to the chart's width
    REPORT.append(
        f"machine detail, 24 h of 10 signals ({10 * len(steps):,} points in InfluxDB, "
        f"{sum(points):,} drawn): asked to drawn in {sorted(timings)[1]} ms (median of 3: "
        f"{timings})"
    )
