"""The chart's optional, dev-grade InfluxDB (``influxdb.enabled``): off by default; when on,
the workers write to it and the gateway reads from it with tokens of its generated Secret, by
reference, and its pod is as locked down as the chart's others. Its start script
(charts/conveyor/files/influxdb-start.sh) is run here as the StatefulSet runs it, with the
StatefulSet's own settings, against a real influxd: users made on the first start and again on
every start, a reader that can read and not write, nobody anonymous, and a volume that outlived
its Secret refused, saying what to do."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.local_servers import free_port, influxd_binary
from tests.cluster.chart import (
    CHART,
    env_of,
    one,
    pod_templates,
    render,
    render_fails,
)
from tests.helpers import wait_until
from tests.servers import require_binary

NAME = "conveyor-influxdb"
START = CHART / "files" / "influxdb-start.sh"


def test_off_by_default() -> None:
    docs = render()
    assert not [d for d in docs if d["metadata"]["name"] == NAME]


def test_the_workers_and_the_gateway_use_it_by_reference() -> None:
    docs = render("influxdb.enabled=true")
    secret = one(docs, "Secret", NAME)["data"]
    writer = base64.b64decode(secret["influx-token"]).decode()
    reader = base64.b64decode(secret["influx-read-token"]).decode()
    assert re.fullmatch(r"writer:[A-Za-z0-9]{40}", writer)
    assert re.fullmatch(r"reader:[A-Za-z0-9]{40}", reader)
    # The admin in a Secret of its own, which only the InfluxDB pod reads.
    admin = one(docs, "Secret", f"{NAME}-admin")["data"]
    assert re.fullmatch(
        r"admin:[A-Za-z0-9]{40}", base64.b64decode(admin["influx-admin-token"]).decode()
    )
    readers = [name for name, pod in pod_templates(docs).items() if f"{NAME}-admin" in str(pod)]
    assert readers == [f"StatefulSet/{NAME}"]
    pods = pod_templates(docs)
    operator = env_of(pods["Deployment/conveyor-operator"])
    assert operator["INFLUX_URL"]["value"] == f"http://{NAME}:8086"
    # The operator hands the workers the writer's Secret, by name: they read it by reference.
    assert operator["OPERATOR_INFLUX_SECRET"]["value"] == NAME
    assert operator["OPERATOR_INFLUX_SECRET_KEY"]["value"] == "influx-token"
    gateway = env_of(pods["Deployment/conveyor-gateway"])
    assert gateway["INFLUX_URL"]["value"] == f"http://{NAME}:8086"
    assert gateway["INFLUX_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": NAME,
        "key": "influx-read-token",
    }
    # The admission policy lets worker pods reference that Secret (and no other but Redis's),
    # never the admin's.
    policy = one(docs, "ValidatingAdmissionPolicy", "conveyor-operator.conveyor")
    assert f'"{NAME}"' in str(policy["spec"])
    assert f"{NAME}-admin" not in str(policy["spec"])
    assert one(docs, "Service", NAME)["spec"]["ports"][0]["port"] == 8086


def test_its_pod_is_locked_down_and_keeps_its_data_on_a_volume() -> None:
    sts = one(render("influxdb.enabled=true"), "StatefulSet", NAME)
    pod = sts["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    env = env_of(pod)
    assert env["INFLUXDB_HTTP_AUTH_ENABLED"]["value"] == "true"
    assert env["INFLUXDB_BIND_ADDRESS"]["value"].startswith("127.0.0.1:")
    for name, key in (("WRITER_TOKEN", "influx-token"), ("READER_TOKEN", "influx-read-token")):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": NAME, "key": key}
    admin = {"name": f"{NAME}-admin", "key": "influx-admin-token"}
    assert env["ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == admin
    assert env["DATABASE"]["value"] == "conveyor"  # influx.bucket's database
    assert container["resources"]["limits"]["memory"]
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/influxdb", "/tmp"} <= mounts


@pytest.mark.parametrize(
    "value",
    ["influx.url=http://influx.example:8086", "influx.existingSecret=mine", "influx.readSecret=r"],
)
def test_an_influxdb_of_ones_own_beside_it_is_refused(value: str) -> None:
    error = render_fails("influxdb.enabled=true", value)
    assert "leave influx.url, influx.existingSecret and influx.readSecret empty" in error


def test_the_two_tokens_need_two_keys() -> None:
    error = render_fails(
        "influxdb.enabled=true", "influx.tokenKey=token", "influx.readTokenKey=token"
    )
    assert "influx.tokenKey and influx.readTokenKey must differ" in error


# --- the start script against a real influxd -------------------------------------------------


class Started:
    """influxdb-start.sh running as the StatefulSet runs it, with a real influxd."""

    def __init__(
        self,
        tmp: Path,
        port: int,
        admin: str,
        writer: str,
        reader: str,
        *,
        command: tuple[str, ...] = ("sh", str(START)),
        database: str | None = None,
    ) -> None:
        sts = one(render("influxdb.enabled=true"), "StatefulSet", NAME)
        values = {k: e["value"] for k, e in env_of(sts["spec"]["template"]["spec"]).items()
                  if "value" in e}  # fmt: skip
        # The pod's paths and ports, moved into the test's directory and free ports.
        values |= {
            "ADMIN_TOKEN": admin,
            "WRITER_TOKEN": writer,
            "READER_TOKEN": reader,
            "HOME": str(tmp / "home"),
            **({"DATABASE": database} if database is not None else {}),
            "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{port}",
            "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{free_port()}",
            **{k: v.replace("/var/lib/influxdb", str(tmp / "data"))
               for k, v in values.items() if v.startswith("/var/lib/influxdb")},
        }  # fmt: skip
        (tmp / "home").mkdir(exist_ok=True)
        (tmp / "home" / "initialised").unlink(missing_ok=True)  # a new pod's /tmp
        binary = influxd_binary() or require_binary("influxd", install="hack/tools.sh influxd")
        path = f"{Path(binary).parent}:{os.environ['PATH']}"
        self.home = tmp / "home"
        self.log = (tmp / "start.log").open("a")
        self.proc = subprocess.Popen(
            command,
            env={"PATH": path, **values},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.log_path = tmp / "start.log"

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def initialised(self) -> bool:
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise AssertionError(f"the start script exited {code}:\n{self.output()}")
        return (self.home / "initialised").exists()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture
def influx_port() -> int:
    return free_port()


@pytest.fixture
def started(tmp_path: Path, influx_port: int) -> Iterator[list[Started]]:
    runs: list[Started] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
        run.wait()


def _call(
    port: int,
    path: str,
    token: str | None,
    data: bytes | None = None,
    *,
    query: str = "SELECT count(value) FROM m",
) -> int:
    params = {"db": "conveyor"}
    if path == "query":
        params["q"] = query
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/{path}?{urllib.parse.urlencode(params)}", data=data
    )
    if token is not None:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


ADMIN = "admin:Asecret1"
WRITER = "writer:Wsecret1"
READER = "reader:Rsecret1"


def _users_of(port: int) -> int:
    """HTTP status of SHOW USERS as the admin."""
    return _call(port, "query", ADMIN, query="SHOW USERS")


@pytest.mark.integration
def test_the_start_script_makes_its_users_on_every_start(
    tmp_path: Path, influx_port: int, started: list[Started]
) -> None:
    first = Started(tmp_path, influx_port, ADMIN, WRITER, READER)
    started.append(first)
    wait_until(first.initialised, timeout=60, what="InfluxDB initialised", detail=first.output)
    point = b"m value=1 1750000000000000000"
    assert _call(influx_port, "write", WRITER, point) == 204
    assert _call(influx_port, "query", WRITER) == 403  # WRITE only: no admin, no reads
    drop = "DROP DATABASE conveyor"
    assert _call(influx_port, "query", WRITER, b"", query=drop) == 403  # POSTed: not read-only
    assert _call(influx_port, "query", READER) == 200
    assert _call(influx_port, "write", READER, point) == 403  # READ only
    assert _call(influx_port, "query", None) == 401  # nobody anonymous
    assert _call(influx_port, "write", "reader:wrong", point) == 401
    assert _users_of(influx_port) == 200
    for secret in ("Asecret1", "Wsecret1", "Rsecret1"):
        assert secret not in first.output()  # no password in its log
    assert first.stop() == 0  # SIGTERM reaches influxd, which ends cleanly

    # Started again on the same data, with the reader's password changed: set again.
    second = Started(tmp_path, influx_port, ADMIN, WRITER, "reader:Rsecret2")
    started.append(second)
    wait_until(second.initialised, timeout=60, what="InfluxDB initialised again")
    assert _call(influx_port, "query", "reader:Rsecret2") == 200
    assert _call(influx_port, "query", READER) == 401
    assert _call(influx_port, "write", WRITER, point) == 204
    assert second.stop() == 0

    # Secrets that are not the volume's: refused, saying what to do.
    third = Started(tmp_path, influx_port, "admin:Other1", WRITER, "reader:Rsecret2")
    started.append(third)
    assert third.wait() == 1
    assert "InfluxDB refuses the admin of its Secret" in third.output()
    assert "delete the volume" in third.output()


def test_its_secrets_outlive_an_uninstall_only_with_the_volume() -> None:
    kept = {"helm.sh/resource-policy": "keep"}
    for sets, keep in (
        ((), True),
        (("volumeClaimsOnUninstall=Delete",), False),
        (("influxdb.persistenceSize=",), False),
    ):
        docs = render("influxdb.enabled=true", *sets)
        for name in (NAME, f"{NAME}-admin"):
            annotations = one(docs, "Secret", name)["metadata"].get("annotations") or {}
            assert (annotations == kept) == keep, (sets, name)


@pytest.mark.integration
def test_a_first_start_cut_short_is_finished_by_the_next(
    tmp_path: Path, influx_port: int, started: list[Started]
) -> None:
    """influxd made its meta store and the pod went before the admin was made (deleted while
    starting): the next start makes the admin, rather than taking the volume for another's."""
    bare = Started(tmp_path, influx_port, ADMIN, WRITER, READER, command=("influxd",))
    started.append(bare)
    meta = tmp_path / "data" / "meta" / "meta.db"
    wait_until(lambda: meta.exists() and meta.stat().st_size > 0, timeout=60, what="meta.db")
    bare.stop()
    again = Started(tmp_path, influx_port, ADMIN, WRITER, READER)
    started.append(again)
    wait_until(again.initialised, timeout=60, what="InfluxDB initialised", detail=again.output)
    assert _call(influx_port, "write", WRITER, b"m value=1 1750000000000000000") == 204
    assert again.stop() == 0


@pytest.mark.integration
@pytest.mark.parametrize(
    ("admin", "reader", "database"),
    [
        ("admin:x' WITH ALL PRIVILEGES --", READER, "conveyor"),
        (ADMIN, "reader:", "conveyor"),
        (ADMIN, READER, 'conveyor"; DROP DATABASE "x'),
    ],
)
def test_the_start_script_refuses_what_would_not_stay_inside_its_quotes(
    tmp_path: Path, influx_port: int, started: list[Started], admin: str, reader: str, database: str
) -> None:
    run = Started(tmp_path, influx_port, admin, WRITER, reader, database=database)
    started.append(run)
    assert run.wait() == 2
    assert "must be letters, digits, _ or -" in run.output()
    assert not (tmp_path / "data").exists()  # influxd never started
