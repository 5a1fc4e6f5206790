"""The dashboard in headless Chromium, fed by the whole pipeline: a message published over
MQTT goes through the ingestor, a worker and the live stream onto the page; a dead letter is
replayed with the page's button. The screenshot is kept in test-artifacts/dashboard.png. With
read and stream auth on, the page asks for the token, keeps it in the tab, and sends it as a
header and as the stream's first message, never in a URL. The gateway's Content-Security-Policy
blocks nothing the page does."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from conveyor_plant.keys import latest_values, live_channel
from playwright.sync_api import expect, sync_playwright

from reliable_queue import QueueClient
from reliable_queue.keys import QUEUE_REGISTRY
from tests.gateway.browser import ARTIFACTS, CHROMIUM_ARGS, chromium_path, watch
from tests.gateway.conftest import TOKEN, GatewayProcess
from tests.helpers import CliProcess, eventually, start_cli, wait_until
from tests.mqtt import publish
from tests.servers import MosquittoServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def pipeline(redis_url: str, mosquitto: MosquittoServer) -> Iterator[list[CliProcess]]:
    """The ingestor and the realtime and alerts workers, as a user runs them."""
    processes = [
        start_cli("ingest", redis_url=redis_url, MQTT_BROKER_URL=mosquitto.url),
        start_cli("work", "--queue", "mqtt_realtime", redis_url=redis_url),
        start_cli("work", "--queue", "alerts", redis_url=redis_url),
    ]
    # The broker drops what is published before the ingestor's subscriptions: its /readyz says
    # when the broker has granted every one (and Redis answers).
    for process in processes:
        wait_until(
            process.ready,
            timeout=30,
            interval=0.1,
            what=f"conveyor {process.command} ready on /readyz",
            detail=process.output,
        )
    yield processes
    for process in processes:
        process.stop(timeout=20)


def test_live_values_alerts_and_replay_on_the_page(
    gateway_process: Callable[..., GatewayProcess],
    pipeline: list[CliProcess],
    mosquitto: MosquittoServer,
    redis_url: str,
) -> None:
    with redis.Redis.from_url(redis_url) as r:  # the queues exist before the page opens
        r.sadd(QUEUE_REGISTRY, "alerts", "mqtt_realtime", "mqtt_spc", "mqtt_tech")
    gw = gateway_process(GATEWAY_API_TOKEN=TOKEN)
    publish(mosquitto.port, [("press-3/tech", b"[1, 2")])  # malformed: dead:ingest
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = watch(page)
        page.goto(gw.url)
        expect(page.locator("#live-status")).to_have_text("live", timeout=15_000)
        expect(page.locator('[data-queue="mqtt_realtime"]')).to_be_visible()

        messages = [
            (f"press-{i}/realtime", json.dumps({"temp": 20.0 + i, "pressure": 5.5, "run": True}))
            for i in range(1, 5)
        ] + [
            (
                "press-2/alerts",
                json.dumps({"type": "overheat", "severity": "high", "message": "oil at 92 °C"}),
            )
        ]
        publish(mosquitto.port, [(t, m.encode()) for t, m in messages])
        machine = page.locator('[data-machine="press-2"]')
        expect(machine).to_contain_text("temp", timeout=20_000)
        expect(machine.locator("dd").first).to_have_text("22")  # temp 22.0
        expect(machine.locator("dd").nth(1)).to_have_text("5.50")
        expect(page.locator("#alerts")).to_contain_text("press-2 · overheat", timeout=20_000)
        expect(page.locator("#alerts li").first).to_contain_text("oil at 92 °C")
        expect(page.locator('[data-queue="mqtt_realtime"] .figure').first).to_be_visible()

        # The malformed message waits in dead:ingest; replay it from the page with the token.
        page.select_option("#dead-queue", "ingest")
        row = page.locator("#dead tbody tr").first
        expect(row).to_contain_text("press-3/tech", timeout=10_000)
        page.fill("#token", TOKEN)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        row.get_by_role("button", name="Replay").click()
        expect(page.locator("#dead-note")).to_have_text("replayed 1 of dead:ingest")
        browser.close()
    assert errors == [], errors


def test_the_page_asks_for_the_token_and_keeps_it_in_the_tab(
    gateway_process: Callable[..., GatewayProcess], redis_url: str
) -> None:
    with redis.Redis.from_url(redis_url) as r:
        r.sadd(QUEUE_REGISTRY, "alerts", "mqtt_realtime")
    gw = gateway_process(
        GATEWAY_API_TOKEN=TOKEN, GATEWAY_READ_AUTH="true", GATEWAY_STREAM_AUTH="true"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors = watch(page)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        page.goto(gw.url)
        login = page.locator("#login")
        expect(login).to_be_visible(timeout=10_000)
        expect(page.locator('[data-queue="alerts"]')).to_have_count(0)

        page.fill("#login-token", "not-the-token-0123456789")
        page.press("#login-token", "Enter")
        expect(page.locator("#login-note")).to_contain_text("refused this token", timeout=10_000)
        expect(login).to_be_visible()

        page.fill("#login-token", TOKEN)
        page.press("#login-token", "Enter")
        expect(login).to_be_hidden()
        expect(page.locator('[data-queue="alerts"]')).to_be_visible(timeout=10_000)
        expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
        event = {"kind": "realtime", "machine": "press-9", "ts": 1, "values": {"temp": 30.5}}
        with redis.Redis.from_url(redis_url) as r:  # what a worker publishes
            r.publish(live_channel("press-9"), json.dumps(event))
        expect(page.locator('[data-machine="press-9"] dd').first).to_have_text("30.50")

        assert page.evaluate("sessionStorage.getItem('conveyor-token')") == TOKEN
        assert page.evaluate("localStorage.getItem('conveyor-token')") is None
        page.reload()  # the same tab keeps the token
        expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
        expect(page.locator('[data-queue="alerts"]')).to_be_visible()
        expect(login).to_be_hidden()

        other = browser.new_page()  # another tab (context): asked again
        other.goto(gw.url)
        expect(other.locator("#login")).to_be_visible(timeout=10_000)
        browser.close()
    assert sockets, "the page never opened the stream"
    assert not [url for url in sockets if "token" in url], sockets
    assert errors == [], errors


def test_an_offline_machines_card_says_so_until_it_is_back(
    gateway_process: Callable[..., GatewayProcess], redis_url: str
) -> None:
    """A Sparkplug B death marks a machine offline: greyed, "offline since", its values its
    last; the next birth's resolve brings it back, live."""
    machine = "plant/line1"
    with redis.Redis.from_url(redis_url) as r:
        r.sadd(QUEUE_REGISTRY, "alerts")
        r.hset(latest_values(machine), mapping={"speed": "4.2", "_ts": "1", "_offline": "2"})
    gw = gateway_process(GATEWAY_API_TOKEN=TOKEN)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors = watch(page)
        page.goto(gw.url)
        card = page.locator(f'[data-machine="{machine}"]')
        expect(card).to_have_class(re.compile(r"\boffline\b"), timeout=15_000)
        expect(card).to_contain_text("offline since")
        expect(card.locator("dd").first).to_have_text("4.20")
        expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)

        def alert(state: str) -> str:
            return json.dumps(
                {"kind": "alert", "machine": machine, "type": "node_offline", "ts": 1,
                 "received_at": 3, "severity": "info", "message": "",
                 "details": {"state": state}}
            )  # fmt: skip

        with redis.Redis.from_url(redis_url) as r:  # what the alerts worker publishes
            r.publish(live_channel(machine), alert("resolved"))
        expect(card).not_to_have_class(re.compile(r"\boffline\b"), timeout=10_000)
        expect(card).not_to_contain_text("offline since")
        with redis.Redis.from_url(redis_url) as r:
            r.publish(live_channel(machine), alert("firing"))
        expect(card).to_have_class(re.compile(r"\boffline\b"), timeout=10_000)
        browser.close()
    assert errors == [], errors


def test_the_depth_history_survives_a_gateway_restart_and_spans_a_day(
    gateway_process: Callable[..., GatewayProcess], redis_url: str
) -> None:
    """The queues' history is kept in Redis: a gateway started after another stopped shows
    the depth from before its start, over 10 minutes and over the day."""

    async def enqueue() -> None:
        async with QueueClient.from_url(redis_url) as client:
            await client.enqueue_many("alerts", [{"n": i} for i in range(5)])

    asyncio.run(enqueue())
    first = gateway_process()

    def samples() -> int:
        history = httpx.get(f"{first.url}/stats/history?minutes=10", timeout=5).json()
        return len(history["queues"].get("alerts", []))

    wait_until(lambda: samples() >= 2, timeout=20, what="two samples of the first gateway")
    first.process.stop(timeout=15)  # SIGTERM, as a pod gets
    stopped = time.time()
    second = gateway_process()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors = watch(page)
        page.goto(second.url)
        spark = page.locator('[data-queue="alerts"] svg.spark')
        expect(spark.locator("path.line")).to_have_count(1, timeout=15_000)
        assert float(spark.get_attribute("data-since") or "inf") < stopped - 1
        expect(spark.locator("title")).to_contain_text("last 10 min, peak 5")
        page.select_option("#history-window", "1440")
        expect(spark.locator("title")).to_contain_text("last 24 h", timeout=15_000)
        assert float(spark.get_attribute("data-since") or "inf") < stopped
        browser.close()
    assert errors == [], errors


def test_a_machine_that_went_quiet_is_greyed_with_when_it_was_last_seen(
    gateway_process: Callable[..., GatewayProcess], redis_url: str
) -> None:
    """No value for two minutes: the card is greyed and says "last seen"; the next value
    brings it back."""
    machine = "press-quiet"
    ten_minutes_ago = int((time.time() - 600) * 1000)
    with redis.Redis.from_url(redis_url) as r:
        r.sadd(QUEUE_REGISTRY, "alerts")
        r.hset(latest_values(machine), mapping={"temp": "21.5", "_ts": str(ten_minutes_ago)})
    gw = gateway_process(GATEWAY_API_TOKEN=TOKEN)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors = watch(page)
        page.goto(gw.url)
        card = page.locator(f'[data-machine="{machine}"]')
        expect(card).to_have_class(re.compile(r"\bstale\b"), timeout=15_000)
        expect(card).to_contain_text("last seen")
        expect(page.locator("#live-status")).to_have_text("live", timeout=10_000)
        event = {"kind": "realtime", "machine": machine, "ts": int(time.time() * 1000),
                 "values": {"temp": 22.5}}  # fmt: skip
        with redis.Redis.from_url(redis_url) as r:  # what the realtime worker publishes
            r.publish(live_channel(machine), json.dumps(event))
        expect(card).not_to_have_class(re.compile(r"\bstale\b"), timeout=10_000)
        expect(card).not_to_contain_text("last seen")
        expect(card.locator("dd").first).to_have_text("22.50")
        browser.close()
    assert errors == [], errors


def test_a_queues_page_draws_its_depth_rates_and_oldest_age(
    gateway_process: Callable[..., GatewayProcess], redis_url: str
) -> None:
    """A queue's name opens its page: depth, jobs per second and the oldest pending job's
    age from the samples kept in Redis; a backlog that formed and drained shows in all three."""

    async def backlog_then_drain() -> None:
        async with QueueClient.from_url(redis_url) as client:
            await client.enqueue_many("alerts", [{"n": i} for i in range(40)])
            wait_until(lambda: samples() >= 2, timeout=20, what="two samples of the backlog")

            async def take(job: object) -> None:
                return None

            stop = await client.start_worker("alerts", take)
            try:

                async def drained() -> bool:
                    return (await client.queue_stats("alerts")).completed == 40

                await eventually(drained, timeout=20, what="the backlog drained")
            finally:
                await stop()

    gw = gateway_process()

    def samples() -> int:
        history = httpx.get(f"{gw.url}/stats/history?minutes=10", timeout=5).json()
        return len(history["queues"].get("alerts", []))

    with redis.Redis.from_url(redis_url) as r:
        r.sadd(QUEUE_REGISTRY, "alerts")
    asyncio.run(backlog_then_drain())
    before = samples()
    wait_until(lambda: samples() >= before + 2, timeout=20, what="samples after the drain")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = watch(page)
        page.goto(gw.url)
        page.locator('[data-queue="alerts"] h3 a').click(timeout=15_000)
        expect(page).to_have_url(f"{gw.url}/#queue/alerts")
        page.select_option("#queue-window", "10")
        # The 1 h window's charts (drawn on opening) stay until the 10 min answer replaces them.
        expect(page.locator("#queue-note")).to_contain_text("over the last 10 min", timeout=15_000)
        depth = page.locator('figure[data-series="depth"]')
        expect(depth).to_have_attribute("data-max", "40", timeout=15_000)
        rate = page.locator('figure[data-series="rate"]')
        assert float(rate.get_attribute("data-max") or 0) > 0  # the drain's completions
        age = page.locator('figure[data-series="age"]')
        assert int(age.get_attribute("data-points") or 0) >= 4
        assert float(age.get_attribute("data-max") or 0) > 0  # the backlog waited
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "queue-history.png"), full_page=True)
        page.locator("#queue-view a.back").click()
        expect(page.locator("#overview")).to_be_visible()
        expect(page.locator("#queue-view")).to_be_hidden()
        browser.close()
    assert errors == [], errors
