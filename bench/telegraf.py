"""Telegraf as the benchmark's peer: ``mqtt_consumer -> outputs.influxdb`` on the same broker.

Telegraf is what a plant would otherwise run for the MQTT -> InfluxDB hop. ``bash hack/tools.sh
telegraf`` builds it from the Go module proxy with only the plugins used here: the MQTT
consumer (QoS 1, a persistent session), the JSON parser, the unpivot processor and the InfluxDB
v1 output. Its configuration makes the same points the realtime worker makes from the same
messages: measurement ``realtime``, tag ``machine`` from the topic's first level, one point per
signal with tag ``signal`` and field ``value``, the message's ``timestamp`` (ms) as the time.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bench import ROOT
from conveyor.local_servers import tools_dir

CLIENT_ID = "bench-telegraf"
TOPICS = ("+/realtime",)
NOT_BUILT = "telegraf not built: run bash hack/tools.sh telegraf (or pass --telegraf)"


def binary() -> Path | None:
    """The Telegraf hack/tools.sh built, if it did."""
    path = tools_dir() / "telegraf"
    return path if os.access(path, os.X_OK) else None


def build() -> Path | None:
    """Build Telegraf with hack/tools.sh (a few minutes the first time); None if that failed
    (its output, on stderr, says why)."""
    result = subprocess.run(["bash", str(ROOT / "hack" / "tools.sh"), "telegraf"], check=False)
    return binary() if result.returncode == 0 else None


def config(*, broker_port: int, influx_url: str, database: str, workdir: Path) -> str:
    """The agent's configuration (TOML). Batches of 5,000 lines, as InfluxDB recommends, and a
    1 s flush for the rest; up to 10,000 messages read ahead of the output."""
    topics = ", ".join(f'"{t}"' for t in TOPICS)
    return f"""\
[agent]
  interval = "1s"
  round_interval = false
  metric_batch_size = 5000
  metric_buffer_limit = 100000
  flush_interval = "1s"
  flush_jitter = "0s"
  omit_hostname = true
  quiet = true
  logfile = "{workdir / "telegraf.log"}"

[[inputs.mqtt_consumer]]
  servers = ["tcp://127.0.0.1:{broker_port}"]
  topics = [{topics}]
  topic_tag = ""
  qos = 1
  persistent_session = true
  client_id = "{CLIENT_ID}"
  max_undelivered_messages = 10000
  name_override = "realtime"
  data_format = "json"
  json_time_key = "timestamp"
  json_time_format = "unix_ms"

  [[inputs.mqtt_consumer.topic_parsing]]
    topic = "+/realtime"
    tags = "machine/_"

[[processors.unpivot]]
  use_fieldname_as = "tag"
  tag_key = "signal"
  value_key = "value"

[[outputs.influxdb]]
  urls = ["{influx_url}"]
  database = "{database}"
  skip_database_creation = true
"""


def start(path: Path, conf: str, workdir: Path) -> subprocess.Popen[bytes]:
    """Start Telegraf with this configuration (written to ``workdir/telegraf.conf``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf_file = workdir / "telegraf.conf"
    conf_file.write_text(conf)
    return subprocess.Popen(
        [str(path), "--config", str(conf_file)],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "telegraf.stderr").open("wb"),
    )
