"""The fleet simulator (virtual_fleet.py) against the device API as it is: a channel move reaches the
whole fleet, and what the virtual devices do (install, fail, roll back implicitly or explicitly,
go silent) is exactly what otad records about them. These tests validate the simulator itself,
so that the rollout scenarios (test_rollout_scenarios.py) can trust its figures."""
import json
import time
from collections import Counter

import pytest

from device_helpers import esp32_image, set_channel, upload
from virtual_fleet import FLEET_DIVISOR, SLOWDOWN, Behaviour, Fleet, Outcome, make_devices, mac_ids
from otad_harness import Otad

CONFIG = json.dumps({"device_flush_interval_ms": 100, "rollback_after_s": 3600, "poll_interval_s": 600,
                     "poll_jitter_s": 60})
IMAGE_SIZE = 8192  # small images: the simulator downloads one per offer


@pytest.fixture(scope="module")
def env():
    d = Otad(http_listener=True, config_text=CONFIG).start()
    try:
        admin = d.create_token("admin")
        viewer = d.create_token("viewer")
        for product in ("simple", "whole", "mixed", "secure"):
            for version, seed in (("1.0.0", 1), ("1.1.0", 2)):
                upload(d, admin, product, version, esp32_image(version, project=product, size=IMAGE_SIZE, seed=seed),
                       "esp32", "ota")
            set_channel(d, admin, product, "stable", "1.0.0")
        yield {"d": d, "admin": admin, "viewer": viewer}
    finally:
        d.cleanup()


def device_ids(d, token, **query):
    """Every device id the registry lists for the filter (all pages)."""
    ids, after = set(), None
    for _ in range(1000):  # bounded: 1000 pages of 1000
        q = "&".join(f"{k}={v}" for k, v in query.items()) + "&limit=1000" + (f"&after={after}" if after else "")
        status, _, page = d.json("GET", f"/api/v1/devices?{q}", token=token)
        assert status == 200, page
        ids |= {x["id"] for x in page["devices"]}
        after = page["next_after"]
        if after is None:
            return ids
    raise AssertionError("too many pages")


def test_outcomes_are_deterministic_and_follow_the_probabilities():
    behaviour = Behaviour(fail=0.1, rollback=0.2, report_rollback=0.5, silent=0.05, defer=0.05)
    ids = mac_ids(10000, prefix="02:5a:01")
    plans = []
    for seed in (7, 7, 8):
        with Fleet("127.0.0.1", 1, "p", make_devices(ids, "1.0.0"), behaviours={"1.1.0": behaviour},
                   seed=seed) as fleet:
            plans.append([fleet.planned_outcome(i, "1.1.0") for i in ids])
    assert plans[0] == plans[1]  # same seed, same fleet: same fate, whatever the threads do later
    assert plans[0] != plans[2]
    share = {o: n / len(ids) for o, n in Counter(plans[0]).items()}
    assert abs(share[Outcome.FAILED] - 0.10) < 0.015
    assert abs(share[Outcome.ROLLED_BACK] + share[Outcome.ROLLED_BACK_REPORTED] - 0.20) < 0.015
    assert abs(share[Outcome.ROLLED_BACK_REPORTED] - 0.10) < 0.015
    assert abs(share[Outcome.SILENT] - 0.05) < 0.01 and abs(share[Outcome.DEFERRED] - 0.05) < 0.01
    assert abs(share[Outcome.INSTALLED] - 0.60) < 0.015
    with pytest.raises(ValueError):
        Behaviour(fail=0.6, rollback=0.5)


def test_10000_devices_poll_in_seconds_and_a_channel_move_reaches_all(env):
    """Devices that take the image for a later maintenance window: the poll path at fleet size
    (reports are written one transaction each and are measured below on a smaller fleet)."""
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    n = 10000 // FLEET_DIVISOR
    with Fleet.for_daemon(d, "simple", make_devices(mac_ids(n, prefix="02:5a:02"), "1.0.0"),
                          default=Behaviour(defer=1.0), report_progress=False) as fleet:
        first = fleet.poll_round()
        assert first.statuses == Counter({204: n}) and first.no_update == Counter({"up_to_date": n})
        print(f"\n{n} polls (204) in {first.seconds:.1f}s on {fleet.connections_opened} connections")
        assert first.seconds < 60 * SLOWDOWN, first.seconds  # "thousands of devices poll in seconds"
        assert fleet.connections_opened <= fleet.workers  # keep-alive: one connection per worker

        set_channel(d, admin, "simple", "stable", "1.1.0")
        move = fleet.poll_round()
        print(f"{n} offers with a verified download in {move.seconds:.1f}s")
        assert move.offers == Counter({"1.1.0": n}) and move.downloads == n
        assert move.outcomes == Counter({Outcome.DEFERRED: n}) and move.reports == Counter()
        again = fleet.poll_round()  # still offered; the image is already downloaded
        assert again.offers == Counter({"1.1.0": n}) and again.downloads == 0
        assert fleet.errors == []
        assert fleet.offered("1.1.0") == set(fleet.devices) and fleet.versions() == Counter({"1.0.0": n})
        assert fleet.connections_opened <= fleet.workers
    assert device_ids(d, viewer, product="simple", version="1.0.0") == set(fleet.devices)


def test_a_channel_move_updates_every_device(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    n = 1000 // FLEET_DIVISOR
    set_channel(d, admin, "whole", "stable", "1.1.0")
    with Fleet.for_daemon(d, "whole", make_devices(mac_ids(n, prefix="02:5a:05"), "1.0.0")) as fleet:
        move = fleet.poll_round()  # new devices on 1.0.0: offered 1.1.0 at their first poll
        print(f"\n{n} updates (poll, download, 4 reports) in {move.seconds:.1f}s")
        assert move.offers == Counter({"1.1.0": n}) and move.downloads == n
        assert move.reports == Counter({"downloading": n, "downloaded": n, "installing": n, "installed": n})
        assert fleet.versions() == Counter({"1.1.0": n})
        assert all(dev.slot == "ota_1" and dev.history == [(1, "1.1.0")] for dev in fleet.devices.values())
        after = fleet.poll_round()
        assert after.no_update == Counter({"up_to_date": n})
        assert fleet.errors == []
    assert device_ids(d, viewer, product="whole", version="1.1.0") == set(fleet.devices)
    assert device_ids(d, viewer, product="whole", status="installed") == set(fleet.devices)


def test_failures_and_rollbacks_are_what_otad_records(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    n = 2000 // FLEET_DIVISOR
    behaviour = Behaviour(fail=0.1, rollback=0.2, report_rollback=0.5, silent=0.05)
    with Fleet.for_daemon(d, "mixed", make_devices(mac_ids(n, prefix="02:5a:03"), "1.0.0"),
                          behaviours={"1.1.0": behaviour}, seed=3) as fleet:
        fleet.poll_round()
        set_channel(d, admin, "mixed", "stable", "1.1.0")
        fleet.poll_round()
        assert fleet.offered("1.1.0") == set(fleet.devices)
        # Devices that failed or rolled back keep polling and are offered 1.1.0 again, but do not
        # take it again; silent devices never come back.
        again = fleet.poll_round()
        assert fleet.errors == []

    installed = fleet.with_outcome("1.1.0", Outcome.INSTALLED)
    failed = fleet.with_outcome("1.1.0", Outcome.FAILED)
    implicit = fleet.with_outcome("1.1.0", Outcome.ROLLED_BACK)
    explicit = fleet.with_outcome("1.1.0", Outcome.ROLLED_BACK_REPORTED)
    silent = fleet.with_outcome("1.1.0", Outcome.SILENT)
    assert len(installed) + len(failed) + len(implicit) + len(explicit) + len(silent) == n
    assert min(len(failed), len(implicit), len(explicit), len(silent)) > 30  # every kind is exercised
    assert again.polls == n - len(silent) and again.offers["1.1.0"] == len(failed | implicit | explicit)
    assert fleet.running("1.1.0") == installed

    assert device_ids(d, viewer, product="mixed", version="1.1.0") == installed
    assert device_ids(d, viewer, product="mixed", status="installed") == installed
    assert device_ids(d, viewer, product="mixed", status="failed") == failed
    assert device_ids(d, viewer, product="mixed", status="rolled_back") == implicit | explicit
    assert device_ids(d, viewer, product="mixed", status="downloaded") == silent

    # One device of each rollback kind: the history says how otad learnt about it.
    for device_id, source in ((min(implicit), "implicit"), (min(explicit), None)):
        status, _, view = d.json("GET", f"/api/v1/devices/{device_id}?limit=20", token=viewer)
        assert status == 200
        kinds = [e["kind"] for e in view["history"]]
        if source == "implicit":
            rolled = next(e for e in view["history"] if e["kind"] == "rolled_back")
            assert rolled["detail"]["source"] == "implicit" and rolled["detail"]["reason"] == "installing_reported"
        else:
            assert "rolled_back" not in kinds  # reported, not detected
            assert any(e["kind"] == "report" and e["status"] == "rolled_back" for e in view["history"])


def test_https_fleet_keeps_its_connections_alive(env):
    d, admin = env["d"], env["admin"]
    n = 500 // FLEET_DIVISOR
    with Fleet.for_daemon(d, "secure", make_devices(mac_ids(n, prefix="02:5a:04"), "1.0.0"), plain=False,
                          workers=4) as fleet:
        fleet.poll_round()
        set_channel(d, admin, "secure", "stable", "1.1.0")
        started = time.monotonic()
        fleet.run_until(lambda s: s.no_update == Counter({"up_to_date": n}), max_rounds=3, timeout=120 * SLOWDOWN)
        assert fleet.errors == []
        assert fleet.versions() == Counter({"1.1.0": n})
        assert fleet.connections_opened <= fleet.workers, fleet.connections_opened
        print(f"\n{n} devices updated over HTTPS in {time.monotonic() - started:.1f}s, "
              f"{fleet.requests_total} requests on {fleet.connections_opened} connections")
