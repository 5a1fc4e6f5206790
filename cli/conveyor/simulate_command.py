"""``conveyor simulate``: a plant of machines publishing telemetry to an MQTT broker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import queue
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from conveyor.settings import MqttSettings, SettingsError, load
from conveyor.simulator import Plant, Publication
from conveyor.sparkplug_simulator import SparkplugPlant

log = logging.getLogger(__name__)

MAX_HISTORY_S = 7 * 86_400.0
"""The most past ``--history`` publishes: a week, the dashboard's longest trend window."""
HISTORY_CHUNK = 5_000
"""Messages of the past published before waiting for the broker's acknowledgements."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="machines publishing realtime, SPC, tech and alert messages (MQTT_BROKER_URL)",
        description="Publishes <machine>/realtime, /spc, /tech and /alerts at QoS 1 to the "
        "broker in MQTT_BROKER_URL (default mqtt://localhost:1883), until Ctrl-C.",
    )
    p.add_argument("--machines", type=int, default=10, help="how many machines (default 10)")
    p.add_argument(
        "--rate", type=float, default=2.0, help="realtime messages per machine per second"
    )
    p.add_argument(
        "--burst",
        type=int,
        default=0,
        help="first publish this many realtime messages at once, to build a backlog",
    )
    p.add_argument(
        "--duration", type=float, help="seconds to run after the burst (default: until Ctrl-C)"
    )
    p.add_argument(
        "--history",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first publish this many seconds of the past, one tick per --history-step, with "
        "their own timestamps: a day (86400) of trends and control charts to look at at once",
    )
    p.add_argument(
        "--history-step",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between the past's ticks (default 10)",
    )
    p.add_argument("--seed", type=int, help="repeatable telemetry")
    p.add_argument(
        "--sparkplug",
        action="store_true",
        help="publish Sparkplug B instead: --machines edge nodes of --devices devices each, in "
        "group --group; they birth, send aliased data, die and are born again now and then, and "
        "answer Rebirth requests (NCMD)",
    )
    p.add_argument("--group", default="plant", help="Sparkplug group id (default plant)")
    p.add_argument("--devices", type=int, default=2, help="Sparkplug devices per edge node")
    p.add_argument(
        "--primary-host",
        metavar="ID",
        help="Sparkplug edge nodes publish only while spBv1.0/STATE/ID says online "
        "(INGEST_SPARKPLUG_HOST_ID of the ingestor)",
    )
    p.set_defaults(run=cmd_simulate)


async def cmd_simulate(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from conveyor_ingestor import broker_config
    from paho.mqtt.enums import CallbackAPIVersion

    if args.machines < 1 or args.rate <= 0 or args.burst < 0:
        raise SettingsError("--machines and --rate must be positive, --burst at least 0")
    if args.sparkplug and (args.burst or args.history or args.devices < 0 or not args.group):
        raise SettingsError(
            "with --sparkplug: no --burst or --history, --devices at least 0, a --group"
        )
    if not (0 <= args.history <= MAX_HISTORY_S and 0.1 <= args.history_step <= MAX_HISTORY_S):
        raise SettingsError(
            f"--history is 0 to {MAX_HISTORY_S:g} seconds (a week), --history-step 0.1 to "
            f"{MAX_HISTORY_S:g}"
        )
    settings = load(MqttSettings)
    config = broker_config(settings.broker_url, client_id=f"conveyor-sim-{uuid.uuid4().hex[:8]}")
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=config.client_id,
        protocol=mqtt.MQTTv5,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.secret())
    if config.tls:
        client.tls_set(ca_certs=str(settings.ca_file) if settings.ca_file else None)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    try:
        client.connect(config.host, config.port)
    except OSError as exc:
        raise SettingsError(
            f"cannot reach the MQTT broker at {settings.safe_broker_url} ({exc}): start one, or "
            "set MQTT_BROKER_URL"
        ) from exc
    client.loop_start()
    # Publish only once the broker has accepted the connection, so that a refused or
    # unanswered connection is reported instead of messages piling up in paho's queue.
    deadline = time.monotonic() + 10
    while not client.is_connected():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise SettingsError(
                f"the MQTT broker at {settings.safe_broker_url} did not accept the connection "
                "within 10 s: check MQTT_USERNAME / MQTT_PASSWORD and the broker's log"
            )
        await asyncio.sleep(0.02)
    plant: Plant | SparkplugPlant
    commands: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
    if args.sparkplug:
        plant = SparkplugPlant(
            group=args.group,
            nodes=args.machines,
            devices=args.devices,
            seed=args.seed,
            primary_host=args.primary_host,
        )
        client.on_message = lambda _c, _u, m: commands.put((m.topic, bytes(m.payload)))
        client.subscribe(plant.command_filter, qos=1)
        if plant.state_topic is not None:
            client.subscribe(plant.state_topic, qos=1)
    else:
        plant = Plant(machines=args.machines, seed=args.seed)
    sent: Counter[str] = Counter()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    def publish(messages: list[Publication]) -> list[mqtt.MQTTMessageInfo]:
        infos = []
        for topic, payload in messages:
            if args.sparkplug:  # QoS 0, as Sparkplug B has edge nodes publish
                infos.append(client.publish(topic, payload, qos=0))
                sent[topic.split("/")[2]] += 1
            else:
                infos.append(client.publish(topic, payload, qos=1))
                sent[topic.rsplit("/", 1)[1]] += 1
        return infos

    try:
        now = int(time.time() * 1000)
        if args.history and isinstance(plant, Plant):  # the machines came up back then
            await _publish_history(plant, publish, args.history, args.history_step, stopping)
            now = int(time.time() * 1000)
        else:
            publish(plant.start(now))
        if args.burst and isinstance(plant, Plant):
            infos = publish(plant.burst(args.burst, now))
            await asyncio.to_thread(_wait_acked, infos)
            log.info("burst of %d realtime messages acknowledged by the broker", args.burst)
        log.info(
            "simulating %d %s at %.1f realtime messages/s each on %s",
            args.machines,
            "Sparkplug edge nodes" if args.sparkplug else "machines",
            args.rate,
            settings.safe_broker_url,
        )
        started = last_report = time.monotonic()
        interval = 1.0 / args.rate
        tick = 0
        while not stopping.is_set():
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
            now = int(time.time() * 1000)
            while isinstance(plant, SparkplugPlant) and not commands.empty():
                topic, payload = commands.get()
                if topic == plant.state_topic:
                    changed = plant.host_state(payload, now)
                    if changed:
                        log.info("primary host %s: %s", args.primary_host, payload.decode())
                    publish(changed)
                    continue
                births = plant.command(topic, payload, now)
                if births:
                    log.info("rebirth of %s, as %s asked", topic.rsplit("/", 1)[1], topic)
                publish(births)
            publish(plant.tick(now))
            tick += 1
            if time.monotonic() - last_report >= 10:
                last_report = time.monotonic()
                log.info("published %s", ", ".join(f"{k} {v:,}" for k, v in sorted(sent.items())))
            delay = started + tick * interval - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
    finally:
        client.disconnect()
        client.loop_stop()
    print("published " + ", ".join(f"{k} {v:,}" for k, v in sorted(sent.items())), flush=True)
    return 0


async def _publish_history(
    plant: Plant,
    publish: Callable[[list[Publication]], list[Any]],
    history_s: float,
    step_s: float,
    stopping: asyncio.Event,
) -> None:
    """The plant's past ``history_s`` seconds, a tick every ``step_s``, each message with its
    own time, up to the moment it is done (so that the live ticks go on from there);
    acknowledged by the broker a chunk at a time, so that paho's queue stays bounded."""
    step_ms = int(step_s * 1000)
    at = int(time.time() * 1000) - int(history_s * 1000)
    infos = publish(plant.start(at))
    ticks = 0
    for _ in range(2):  # the past, then once more the time its publishing took
        end = int(time.time() * 1000)
        while at < end and not stopping.is_set():
            infos += publish(plant.tick(at))
            ticks += 1
            at += step_ms
            if len(infos) >= HISTORY_CHUNK:
                await asyncio.to_thread(_wait_acked, infos)
                infos = []
    await asyncio.to_thread(_wait_acked, infos)
    log.info("published %d ticks of the past, acknowledged by the broker", ticks)


def _wait_acked(infos: Sequence[Any]) -> None:
    for info in infos:
        info.wait_for_publish(300)
        if not info.is_published():
            raise SettingsError(
                "the MQTT broker did not acknowledge a message within 300 s: check the broker "
                "and its log"
            )
