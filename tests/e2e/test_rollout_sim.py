"""The rollout simulation (issue 11's proof): a fleet of virtual devices (fleet_sim.py) against the
real daemon over HTTP. Time is accelerated through configuration (rollout_time_scale: hold_s of 60
passes in one second), never by sleeping; every loop is bounded in rounds and seconds.

1. a 5 % stage offers the target to 5 % +- 1 % of 10,000 devices, and to the same devices after a
   restart of otad;
2. a healthy rollout walks through its stages and completes; the channel then points at the target;
3. a build that makes 20 % of devices roll back is paused by the gate before the second stage, and no
   device outside the first stage was ever offered it;
4. abort with revert brings updated devices back to the base release;
5. pinned and excluded devices behave as told.
"""
import json
import os

import pytest

from device_helpers import esp32_image, set_channel, upload
from fleet_sim import Fleet, bucket
from otad_harness import Otad, wait_for

TIME_SCALE = 60
CONFIG = json.dumps({"device_flush_interval_ms": 50, "rollout_tick_ms": 100, "rollout_time_scale": TIME_SCALE,
                     "poll_jitter_s": 0, "rollback_after_s": 86400})


@pytest.fixture(scope="module")
def images():
    return {v: esp32_image(v, size=16384, seed=i + 20) for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0"])}


@pytest.fixture
def daemon(images):
    """A daemon with a plain-HTTP listener and thermo 1.0.0 (stable), 1.1.0 and 1.2.0."""
    made = []

    def make(allow_rollback=False):
        d = Otad(http_listener=True, config_text=CONFIG).start()
        made.append(d)
        admin = d.create_token("admin")
        for v in ("1.0.0", "1.1.0", "1.2.0"):
            upload(d, admin, "thermo", v, images[v], "esp32", "ota")
        set_channel(d, admin, "thermo", "stable", "1.0.0", allow_rollback=allow_rollback)
        return d, admin

    yield make
    for d in made:
        d.cleanup()


def start_rollout(d, admin, stages, version="1.1.0", gate=None):
    body = {"channel": "stable", "version": version, "stages": stages}
    if gate:
        body["gate"] = gate
    status, _, doc = d.json("POST", "/api/v1/products/thermo/rollouts", body, token=admin)
    assert status == 201, doc
    return doc["id"]


def status_of(d, admin, rid):
    status, _, doc = d.json("GET", f"/api/v1/products/thermo/rollouts/{rid}", token=admin)
    assert status == 200, doc
    return doc


def channel_version(d, admin):
    _, _, doc = d.json("GET", "/api/v1/products/thermo/channels/stable", token=admin)
    return doc["version"]


def fleet_for(d, count, **kwargs):
    return Fleet("127.0.0.1", d.http_port, "thermo", count, "1.0.0", **kwargs)


def test_1_a_5_percent_stage_offers_5_percent_of_10000_devices_and_the_same_ones_after_a_restart(daemon):
    d, admin = daemon()
    rid = start_rollout(d, admin, [{"percent": 5}, {"percent": 100}])
    fleet = fleet_for(d, 10_000, install=False)  # poll only: nobody installs, so a restart sees the same fleet
    first = {dev for dev, v in fleet.round().items() if v == "1.1.0"}
    assert 400 <= len(first) <= 600, len(first)  # 5 % +- 1 %
    assert first == {dev.id for dev in fleet.devices if bucket(rid, dev.id) < 500}
    assert not any(v for dev, v in fleet.round().items() if v not in (None, "1.1.0"))
    wait_for(lambda: status_of(d, admin, rid)["totals"]["offered"] == len(first), 20, what="the offers counted")

    # Restart: the same devices are offered the target, nobody else.
    data_dir = d.data_dir
    d.stop()
    d2 = Otad(http_listener=True, config_text=CONFIG, data_dir=data_dir)
    d2.log_path = os.path.join(data_dir, "otad-restart.log")
    d2.start()
    try:
        fleet.port = d2.http_port
        again = {dev for dev, v in fleet.round().items() if v == "1.1.0"}
        assert again == first
        doc = status_of(d2, admin, rid)
        assert doc["state"] == "running" and doc["current_stage"] == 0
        assert doc["stages"][0]["counters"]["offered"] == len(first)
        assert doc["stages"][1]["counters"]["offered"] == 0
    finally:
        d2.stop()


def test_2_a_healthy_rollout_walks_through_its_stages_and_moves_the_channel(daemon):
    d, admin = daemon()
    rid = start_rollout(d, admin, [{"percent": 5, "hold_s": 120}, {"percent": 25, "hold_s": 120},
                                   {"percent": 100, "hold_s": 120}])  # 2 s each at TIME_SCALE
    fleet = fleet_for(d, 2000, p_fail=0.005, p_rollback=0.005, seed=2)

    def done():
        doc = status_of(d, admin, rid)
        assert doc["state"] != "paused", doc["pause"]
        return doc["state"] == "completed" and fleet.versions()["1.1.0"] >= 0.98 * 2000

    fleet.run_until(done, max_rounds=40, deadline_s=240)
    assert channel_version(d, admin) == "1.1.0"
    doc = status_of(d, admin, rid)
    assert [s["state"] for s in doc["stages"]] == ["done", "done", "done"]
    # Counted while the rollout ran; after completion the channel itself offers the target.
    assert doc["totals"]["installed"] > 0 and doc["gate"]["breached"] is False
    assert all(s["counters"]["offered"] > 0 for s in doc["stages"])
    assert fleet.images_checked >= 1960  # every install downloaded and checked its image


def test_3_a_build_that_rolls_back_on_20_percent_is_paused_before_the_second_stage(daemon):
    d, admin = daemon()
    rid = start_rollout(d, admin, [{"percent": 5, "hold_s": 3600}, {"percent": 50, "hold_s": 60}, {"percent": 100}],
                        gate={"max_rollback_ratio": 0.05, "min_devices": 20})
    fleet = fleet_for(d, 2000, p_rollback=0.2, seed=3)
    fleet.run_until(lambda: status_of(d, admin, rid)["state"] == "paused", max_rounds=20, deadline_s=120)
    doc = status_of(d, admin, rid)
    assert doc["current_stage"] == 0 and doc["pause"]["reason"] == "gate"
    assert doc["pause"]["detail"]["breach"] == "rollback_ratio"
    assert doc["gate"]["rollback_ratio"] > 0.05
    # Keep polling: nobody new is offered the build, nobody outside the first stage ever was.
    offered_before = fleet.offered_ever("1.1.0")
    for _ in range(2):
        fleet.round()
    first_stage = {dev.id for dev in fleet.devices if bucket(rid, dev.id) < 500}
    assert fleet.offered_ever("1.1.0") == offered_before
    assert offered_before <= first_stage
    assert all(s["counters"]["offered"] == 0 for s in status_of(d, admin, rid)["stages"][1:])
    # Paused as soon as the ratio was judged: at least min_devices offered, few of them more.
    assert 20 <= len(offered_before) <= 500
    assert fleet.outcomes("1.1.0")["rolled_back"] >= 2


def test_4_abort_with_revert_brings_updated_devices_back_to_the_base(daemon):
    d, admin = daemon(allow_rollback=True)
    rid = start_rollout(d, admin, [{"percent": 100}])
    fleet = fleet_for(d, 1000, seed=4)
    fleet.run_until(lambda: fleet.versions()["1.1.0"] == 1000, max_rounds=5, deadline_s=120)
    status, _, doc = d.json("POST", f"/api/v1/products/thermo/rollouts/{rid}/abort", {"revert": True}, token=admin)
    assert status == 200 and doc["state"] == "aborted"
    fleet.run_until(lambda: fleet.versions()["1.0.0"] == 1000, max_rounds=5, deadline_s=120)
    assert channel_version(d, admin) == "1.0.0"
    assert all(dev.offers[-1] == "1.0.0" for dev in fleet.devices)


def test_5_pinned_and_excluded_devices_behave_as_told(daemon):
    d, admin = daemon()
    fleet = fleet_for(d, 1000, seed=5)
    assert not any(fleet.round().values())  # every device known, all on the channel's 1.0.0
    rid = start_rollout(d, admin, [{"percent": 50}, {"percent": 100}])
    inside = [dev.id for dev in fleet.devices if bucket(rid, dev.id) < 5000]
    outside = [dev.id for dev in fleet.devices if bucket(rid, dev.id) >= 5000]
    excluded, pinned_in = inside[:10], inside[10:15]
    pinned_out = outside[:10]
    for dev in excluded:
        assert d.json("PUT", f"/api/v1/devices/{dev}/override", {"exclude": True}, token=admin)[0] == 200
    for dev in pinned_in + pinned_out:
        assert d.json("PUT", f"/api/v1/devices/{dev}/override", {"pin": "1.2.0"}, token=admin)[0] == 200
    for _ in range(6):  # until nobody is offered anything more
        if not any(fleet.round().values()):
            break

    version = {dev.id: dev.version for dev in fleet.devices}
    assert all(version[dev] == "1.0.0" for dev in excluded)
    assert all(version[dev] == "1.2.0" for dev in pinned_in + pinned_out)
    special = set(excluded + pinned_in + pinned_out)
    assert all(version[dev] == "1.1.0" for dev in inside if dev not in special)
    assert all(version[dev] == "1.0.0" for dev in outside if dev not in special)
    _, _, view = d.json("GET", f"/api/v1/devices/{excluded[0]}", token=admin)
    assert view["release_choice"]["source"] == "excluded"
    _, _, view = d.json("GET", f"/api/v1/devices/{pinned_out[0]}", token=admin)
    assert (view["release_choice"]["source"], view["release_choice"]["version"]) == ("pin", "1.2.0")
