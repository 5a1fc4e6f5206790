"""`conveyor simulate --sparkplug`'s plant, fed to the ingestor's Sparkplug sessions: its births
name every alias it later sends, its seq never skips, a death carries its birth's bdSeq and the
next birth the next one, and it answers a Rebirth request (and nothing else) with its births."""

from __future__ import annotations

from conveyor_ingestor.sparkplug.decoding import decode
from conveyor_ingestor.sparkplug.handling import rebirth_request
from conveyor_ingestor.sparkplug.sessions import Handled, Session, Sessions
from conveyor_ingestor.sparkplug.topics import parse_topic

from conveyor.simulator import Publication
from conveyor.sparkplug_simulator import SparkplugPlant

T0 = 1_700_000_000_000


def feed(sessions: Sessions, publications: list[Publication]) -> list[Handled]:
    out = []
    for topic_text, payload in publications:
        topic = parse_topic(topic_text)
        assert topic is not None
        if topic.node_key not in sessions:
            sessions.put(Session(topic.node_key))
        out.append(sessions.handle(topic, decode(payload), raw=payload, received_at=T0, now=0.0))
    return out


def test_what_the_plant_sends_resolves_without_a_rebirth() -> None:
    plant = SparkplugPlant(group="g", nodes=2, devices=2, seed=1, death_chance=0.05)
    sessions = Sessions()
    handled = feed(sessions, plant.start(T0))
    for i in range(300):  # past seq 255, with a few deaths and births among them
        handled += feed(sessions, plant.tick(T0 + i))
    assert not any(h.parked or h.rebirth or h.rejected for h in handled)
    machines = {m["machine"] for h in handled for m, _ in h.realtime}
    assert machines == {
        "g/line-01", "g/line-02",
        "g/line-01/press-01", "g/line-01/press-02",
        "g/line-02/press-01", "g/line-02/press-02",
    }  # fmt: skip
    deaths = [a for h in handled for a in h.alerts if a["details"]["state"] == "firing"]
    births = [a for h in handled for a in h.alerts if a["details"]["state"] == "resolved"]
    assert deaths  # death_chance 0.05 over 300 ticks of 2 nodes
    assert len(births) == len(deaths)  # each death's births resolve it at once
    assert not any(h.stale_death for h in handled)  # each death carries its birth's bdSeq
    session = sessions.get("g/line-01")
    assert session is not None
    assert session.devices["press-01"].metrics["Pressure"].properties == {"engUnit": "bar"}


def test_a_rebirth_request_brings_the_births_and_another_command_nothing() -> None:
    plant = SparkplugPlant(group="g", nodes=1, devices=1, seed=2)
    plant.start(T0)
    births = plant.command("spBv1.0/g/NCMD/line-01", rebirth_request(), T0)
    assert [t for t, _ in births] == [
        "spBv1.0/g/NBIRTH/line-01",
        "spBv1.0/g/DBIRTH/line-01/press-01",
    ]
    assert decode(births[0][1]).seq == 0
    assert plant.command("spBv1.0/g/NCMD/line-09", rebirth_request(), T0) == []
    assert plant.command("spBv1.0/other/NCMD/line-01", rebirth_request(), T0) == []


def test_with_a_primary_host_the_nodes_publish_only_while_it_is_online() -> None:
    plant = SparkplugPlant(group="g", nodes=2, devices=0, seed=3, primary_host="conveyor")
    assert plant.state_topic == "spBv1.0/STATE/conveyor"
    assert plant.start(T0) == []  # waiting for the host
    assert plant.tick(T0) == []
    online = plant.host_state(b'{"online": true, "timestamp": 1}', T0)
    assert sorted(t for t, _ in online) == ["spBv1.0/g/NBIRTH/line-01", "spBv1.0/g/NBIRTH/line-02"]
    assert plant.tick(T0 + 1)
    assert plant.host_state(b'{"online": true, "timestamp": 1}', T0) == []  # no change
    offline = plant.host_state(b'{"online": false, "timestamp": 1}', T0 + 2)
    assert sorted(t for t, _ in offline) == ["spBv1.0/g/NDEATH/line-01", "spBv1.0/g/NDEATH/line-02"]
    assert plant.tick(T0 + 3) == []
    reborn = plant.host_state(b'{"online": true, "timestamp": 5}', T0 + 4)
    sessions = Sessions()
    handled = feed(sessions, online + offline + reborn)
    assert not any(h.stale_death or h.parked for h in handled)  # deaths carry their bdSeq
    assert plant.host_state(b"not json", T0) == []
