"""Staged rollouts against the real daemon (docs/rollouts.md): the API and its problem documents,
the cohort rule seen through real polls, the health gate pausing by itself, holds advancing and the
last stage moving the channel, abort with and without revert, pins and exclusions, tags, the
512+512 rule, the `otad rollout` command line, and kill -9 durability."""
import json
import os
import re
import signal
import sqlite3
import threading

import pytest

from device_helpers import esp32_image, esp32_poll, nonos_image, set_channel, upload
from virtual_fleet import rollout_bucket as bucket
from otad_harness import Otad, run_otad, wait_for

CONFIG = json.dumps({"device_flush_interval_ms": 50, "rollout_tick_ms": 100, "poll_jitter_s": 0,
                     "rollback_after_s": 3600})


@pytest.fixture(scope="module")
def images():
    return {v: esp32_image(v, seed=i + 10) for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0", "0.9.0"])}


def start(images, data_dir=None, config=CONFIG):
    d = Otad(config_text=config, data_dir=data_dir).start()
    return d


def catalogue(d, admin, images, product="thermo", versions=("1.0.0", "1.1.0", "1.2.0"), allow_rollback=False):
    for v in versions:
        upload(d, admin, product, v, images[v], "esp32", "ota")
    set_channel(d, admin, product, "stable", versions[0], allow_rollback=allow_rollback)


@pytest.fixture
def env(images):
    d = start(images)
    try:
        admin = d.create_token("admin")
        catalogue(d, admin, images)
        yield {"d": d, "admin": admin, "viewer": d.create_token("viewer")}
    finally:
        d.cleanup()


def start_rollout(d, admin, stages, version="1.1.0", product="thermo", gate=None, filter=None, expect=201):
    body = {"channel": "stable", "version": version, "stages": stages}
    if gate is not None:
        body["gate"] = gate
    if filter is not None:
        body["filter"] = filter
    status, headers, doc = d.json("POST", f"/api/v1/products/{product}/rollouts", body, token=admin)
    assert status == expect, (status, doc)
    return doc if status != 201 else (doc, headers)


def rollout(d, token, rid, product="thermo"):
    status, _, doc = d.json("GET", f"/api/v1/products/{product}/rollouts/{rid}", token=token)
    assert status == 200, doc
    return doc


def action(d, admin, rid, name, body=None, product="thermo"):
    return d.json("POST", f"/api/v1/products/{product}/rollouts/{rid}/{name}", body if body is not None else {},
                  token=admin)


def offered_version(d, device, version="1.0.0"):
    status, _, body = esp32_poll(d, version=version, device=device)
    assert status in (200, 204), (status, body[:300])
    return json.loads(body)["version"] if status == 200 else None


def audit_entries(d, admin, action_name):
    status, _, doc = d.json("GET", "/api/v1/audit?limit=500", token=admin)
    assert status == 200
    return [e for e in doc["entries"] if e["action"] == action_name]


def problem_of(status, headers, doc, expected_status, type_slug):
    assert status == expected_status, (status, doc)
    assert headers["content-type"] == "application/problem+json"
    assert doc["type"] == "https://otad.dev/problems/" + type_slug, doc
    return doc


# ---------------------------------------------------------------- API

def test_start_list_get_and_one_active_rollout_per_channel(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    doc, headers = start_rollout(d, admin, [{"percent": 1, "hold_s": 3600}, {"percent": 10, "hold_s": 86400},
                                            {"percent": 50}, {"percent": 100}],
                                 gate={"max_failure_ratio": 0.02})
    rid = doc["id"]
    assert headers["location"] == f"/api/v1/products/thermo/rollouts/{rid}"
    assert (doc["state"], doc["channel"], doc["base_version"], doc["target_version"]) == \
        ("running", "stable", "1.0.0", "1.1.0")
    assert [s["percent"] for s in doc["stages"]] == [1, 10, 50, 100]
    assert [s["hold_s"] for s in doc["stages"]] == [3600, 86400, None, None]
    assert doc["stages"][0]["state"] == "current" and "hold_ends_at" in doc["stages"][0]
    assert doc["gate"]["max_failure_ratio"] == 0.02 and doc["gate"]["max_rollback_ratio"] == 0.05
    assert doc["totals"] == {"eligible": 0, "offered": 0, "downloading": 0, "installed": 0, "failed": 0,
                             "rolled_back": 0, "silent": 0}
    assert rollout(d, viewer, rid)["id"] == rid  # viewers read
    status, _, listing = d.json("GET", "/api/v1/products/thermo/rollouts", token=viewer)
    assert status == 200 and [r["id"] for r in listing["rollouts"]] == [rid]

    # A second rollout on the channel is a 409 that names the running one.
    status, headers, body = d.json("POST", "/api/v1/products/thermo/rollouts",
                                   {"channel": "stable", "version": "1.2.0", "stages": [{"percent": 100}]}, token=admin)
    problem = problem_of(status, headers, body, 409, "rollout-active")
    assert problem["rollout"] == rid and f"rollout {rid}" in problem["detail"]

    # Viewers cannot start or steer; unknown rollouts are 404 problems.
    status, _, _ = d.json("POST", f"/api/v1/products/thermo/rollouts/{rid}/pause", {}, token=viewer)
    assert status == 403
    problem_of(*d.json("GET", "/api/v1/products/thermo/rollouts/999", token=viewer), 404, "rollout-not-found")
    problem_of(*d.json("GET", "/api/v1/products/nope/rollouts", token=viewer), 404, "product-not-found")


@pytest.mark.parametrize("body, fragment", [
    ({"channel": "stable", "version": "1.1.0", "stages": [{"percent": 10}, {"percent": 5}, {"percent": 100}]},
     "stages[1].percent must be above the previous"),
    ({"channel": "stable", "version": "1.1.0", "stages": [{"percent": 50}]}, "last stage must be at 100"),
    ({"channel": "stable", "version": "1.1.0", "stages": [{"percent": 100}], "gate": {"min_devices": -1}},
     "gate.min_devices"),
    ({"channel": "stable", "version": "1.1.0", "stages": [{"percent": 100}], "filter": {"chip": "esp99"}},
     "filter.chip 'esp99' is not known"),
    ({"channel": "stable", "version": "1.1.0", "stages": [{"percent": 100}], "colour": "red"}, "unknown member"),
])
def test_bad_rollouts_are_400_naming_the_problem(env, body, fragment):
    status, headers, doc = env["d"].json("POST", "/api/v1/products/thermo/rollouts", body, token=env["admin"])
    assert fragment in problem_of(status, headers, doc, 400, "invalid-body")["detail"]


def test_missing_release_channel_and_same_release_are_refused(env):
    d, admin = env["d"], env["admin"]
    problem_of(*d.json("POST", "/api/v1/products/thermo/rollouts",
                       {"channel": "stable", "version": "9.9.9", "stages": [{"percent": 100}]}, token=admin),
               404, "release-not-found")
    problem_of(*d.json("POST", "/api/v1/products/thermo/rollouts",
                       {"channel": "beta", "version": "1.1.0", "stages": [{"percent": 100}]}, token=admin),
               404, "channel-not-found")
    problem_of(*d.json("POST", "/api/v1/products/thermo/rollouts",
                       {"channel": "stable", "version": "1.0.0", "stages": [{"percent": 100}]}, token=admin),
               409, "same-release")


def test_a_running_rollout_keeps_its_releases_and_owns_its_channel(env):
    d, admin = env["d"], env["admin"]
    doc, _ = start_rollout(d, admin, [{"percent": 100}])
    problem = problem_of(*d.json("DELETE", "/api/v1/products/thermo/releases/1.1.0", token=admin), 409,
                         "release-in-rollout")
    assert problem["rollouts"] == [doc["id"]]
    problem_of(*d.json("DELETE", "/api/v1/products/thermo/releases/1.0.0", token=admin), 409, "release-on-channel")
    problem_of(*d.json("PUT", "/api/v1/products/thermo/channels/stable", {"version": "1.2.0"}, token=admin), 409,
               "channel-in-rollout")
    problem_of(*d.json("DELETE", "/api/v1/products/thermo/channels/stable", token=admin), 409, "channel-in-rollout")
    status, _, _ = action(d, admin, doc["id"], "abort")
    assert status == 200
    status, _, _ = d.json("DELETE", "/api/v1/products/thermo/releases/1.2.0", token=admin)
    assert status == 204


def test_512_512_rule_on_rollouts_and_channels(env):
    d, admin = env["d"], env["admin"]
    for version, slots in (("1.0.0", ("user1", "user2")), ("2.0.0", ("user1",))):
        for i, slot in enumerate(slots):
            upload(d, admin, "nonos", version, nonos_image(slot, 2, seed=40 + i + (5 if version == "2.0.0" else 0)),
                   "esp8266", "512+512", slot)
    set_channel(d, admin, "nonos", "stable", "1.0.0")
    status, headers, doc = d.json("POST", "/api/v1/products/nonos/rollouts",
                                  {"channel": "stable", "version": "2.0.0", "stages": [{"percent": 100}]}, token=admin)
    problem = problem_of(status, headers, doc, 422, "missing-slot-build")
    assert problem["missing_artifacts"][0]["slot"] == "user2" and "user2" in problem["detail"]
    problem = problem_of(*d.json("PUT", "/api/v1/products/nonos/channels/beta", {"version": "2.0.0"}, token=admin),
                         422, "missing-slot-build")
    assert "esp8266 512+512 user2" in problem["detail"]
    set_channel(d, admin, "nonos", "beta", "2.0.0", force=True)


# ---------------------------------------------------------------- the cohort through real polls

def test_a_stage_offers_the_target_to_its_cohort_only_and_status_counts_it(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    doc, _ = start_rollout(d, admin, [{"percent": 10}, {"percent": 100}])
    rid = doc["id"]
    devices = [f"cohort-{i}" for i in range(300)]
    expected = {dev for dev in devices if bucket(rid, dev) < 1000}
    got = {dev for dev in devices if offered_version(d, dev) == "1.1.0"}
    assert got == expected and 10 <= len(got) <= 50
    # The rest were answered as if the channel still pointed at the base (they run it: 204).
    doc = wait_for(lambda: (lambda r: r if r["totals"]["offered"] == len(expected) else None)(rollout(d, viewer, rid)),
                   10, what="the offers to be counted")
    assert doc["stages"][0]["counters"]["offered"] == len(expected)
    assert doc["stages"][1]["counters"]["offered"] == 0

    # The device view says why.
    inside = sorted(expected)[0]
    outside = next(dev for dev in devices if dev not in expected)
    status, _, view = d.json("GET", f"/api/v1/devices/{inside}", token=viewer)
    assert status == 200
    choice = view["release_choice"]
    assert (choice["source"], choice["answer"], choice["version"], choice["bucket"]) == \
        ("rollout", "target", "1.1.0", bucket(rid, inside))
    _, _, view = d.json("GET", f"/api/v1/devices/{outside}", token=viewer)
    assert (view["release_choice"]["answer"], view["release_choice"]["version"]) == ("base", "1.0.0")
    assert "outside the current stage" in view["release_choice"]["detail"]

    # Advancing takes in the rest; the first cohort stays in.
    status, _, doc = action(d, admin, rid, "advance")
    assert status == 200 and (doc["state"], doc["current_stage"]) == ("running", 1)
    assert offered_version(d, outside) == "1.1.0" and offered_version(d, inside) == "1.1.0"
    _, _, channel = d.json("GET", "/api/v1/products/thermo/channels/stable", token=viewer)
    assert channel["version"] == "1.0.0"
    status, _, doc = action(d, admin, rid, "advance")  # past the last stage: the channel moves
    assert status == 200 and doc["state"] == "completed"
    _, _, channel = d.json("GET", "/api/v1/products/thermo/channels/stable", token=viewer)
    assert channel["version"] == "1.1.0"


def test_the_gate_pauses_by_itself_and_resume_needs_force(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    doc, _ = start_rollout(d, admin, [{"percent": 100, "hold_s": 3600}],
                           gate={"min_devices": 10, "max_failure_ratio": 0.1})
    rid = doc["id"]
    for i in range(20):
        assert offered_version(d, f"gate-{i}") == "1.1.0"
    for i in range(3):
        status, _, _ = d.json("POST", f"/api/v1/devices/gate-{i}/report",
                              {"status": "failed", "version": "1.1.0", "detail": "flash write error"})
        assert status == 204
    paused = wait_for(lambda: (lambda r: r if r["state"] == "paused" else None)(rollout(d, viewer, rid)), 15,
                      what="the gate to pause the rollout")
    assert paused["pause"]["reason"] == "gate"
    assert paused["pause"]["detail"]["breach"] == "failure_ratio"
    assert paused["gate"]["breached"] and paused["gate"]["failing"] == 3 and paused["gate"]["offered"] == 20
    entry = audit_entries(d, admin, "rollout.pause")[0]
    assert entry["actor"] == "system" and entry["detail"]["gate"]["failure_ratio"] == 0.15
    assert re.search(r"warn.*rollout_paused_by_gate.*rollout=" + str(rid), d.log())
    assert offered_version(d, "gate-new") is None  # nobody new takes the target while paused

    problem = problem_of(*action(d, admin, rid, "resume"), 409, "gate-breached")
    assert "failure ratio 0.1500" in problem["detail"]
    status, _, doc = action(d, admin, rid, "resume", {"force": True})
    assert status == 200 and doc["state"] == "running" and not doc["gate"]["breached"]
    assert offered_version(d, "gate-new") == "1.1.0"
    assert [e["detail"]["force"] for e in audit_entries(d, admin, "rollout.resume")] == [True]


def test_holds_walk_the_stages_and_completion_moves_the_channel(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    doc, _ = start_rollout(d, admin, [{"percent": 10, "hold_s": 1}, {"percent": 50, "hold_s": 1},
                                      {"percent": 100, "hold_s": 1}])
    rid = doc["id"]
    done = wait_for(lambda: (lambda r: r if r["state"] == "completed" else None)(rollout(d, viewer, rid)), 20,
                    what="the rollout to complete")
    assert [s["state"] for s in done["stages"]] == ["done", "done", "done"]
    _, _, channel = d.json("GET", "/api/v1/products/thermo/channels/stable", token=viewer)
    assert channel["version"] == "1.1.0"
    assert [e["detail"]["to_stage"] for e in audit_entries(d, admin, "rollout.advance")] == [2, 1]  # newest first
    assert len(audit_entries(d, admin, "rollout.complete")) == 1
    status, _, _ = action(d, admin, rid, "pause")
    assert status == 409


def test_abort_keeps_updated_devices_and_revert_offers_the_base_again(images):
    d = start(images)
    try:
        admin = d.create_token("admin")
        catalogue(d, admin, images, allow_rollback=True)
        doc, _ = start_rollout(d, admin, [{"percent": 100}])
        assert offered_version(d, "upd-1") == "1.1.0"
        assert offered_version(d, "upd-1", version="1.1.0") is None  # now on the target: up to date
        status, _, doc = action(d, admin, doc["id"], "abort")
        assert status == 200 and doc["state"] == "aborted" and doc["revert"] is False
        assert offered_version(d, "upd-1", version="1.1.0") is None  # stays on the target
        assert offered_version(d, "late-1") is None                  # never updated: keeps the base

        doc, _ = start_rollout(d, admin, [{"percent": 100}], version="1.2.0")
        assert offered_version(d, "upd-2") == "1.2.0"
        status, _, doc = action(d, admin, doc["id"], "abort", {"revert": True})
        assert status == 200 and doc["revert"] is True
        assert offered_version(d, "upd-2", version="1.2.0") == "1.0.0"  # offered the base back
    finally:
        d.cleanup()


def test_revert_is_refused_when_the_channel_does_not_allow_rollback(env):
    d, admin = env["d"], env["admin"]
    doc, _ = start_rollout(d, admin, [{"percent": 100}])
    problem_of(*action(d, admin, doc["id"], "abort", {"revert": True}), 409, "rollback-not-allowed")
    problem_of(*action(d, admin, doc["id"], "abort", {"revert": "yes"}), 400, "invalid-body")


# ---------------------------------------------------------------- pins, exclusions, tags

def test_pins_and_exclusions_behave_as_told_and_the_device_view_says_why(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    for dev in ("pinned", "excluded", "plain"):
        offered_version(d, dev)
    wait_for(lambda: d.json("GET", "/api/v1/devices/plain", token=viewer)[0] == 200, 10, what="devices known")
    status, _, pin = d.json("PUT", "/api/v1/devices/pinned/override", {"pin": "1.2.0", "reason": "field test"},
                            token=admin)
    assert status == 200 and pin["kind"] == "pin" and pin["version"] == "1.2.0"
    status, _, _ = d.json("PUT", "/api/v1/devices/excluded/override", {"exclude": True}, token=admin)
    assert status == 200
    start_rollout(d, admin, [{"percent": 100}])
    assert offered_version(d, "pinned") == "1.2.0"   # the pin wins over the rollout
    assert offered_version(d, "excluded") is None    # keeps the base
    assert offered_version(d, "plain") == "1.1.0"
    _, _, view = d.json("GET", "/api/v1/devices/pinned", token=viewer)
    assert view["override"]["reason"] == "field test" and view["release_choice"]["source"] == "pin"
    _, _, view = d.json("GET", "/api/v1/devices/excluded", token=viewer)
    assert view["release_choice"]["source"] == "excluded"

    status, _, _ = d.json("DELETE", "/api/v1/devices/excluded/override", token=admin)
    assert status == 204
    assert offered_version(d, "excluded") == "1.1.0"
    problem_of(*d.json("DELETE", "/api/v1/devices/excluded/override", token=admin), 404, "override-not-found")
    problem_of(*d.json("PUT", "/api/v1/devices/nobody/override", {"exclude": True}, token=admin), 404,
               "device-not-found")
    problem_of(*d.json("PUT", "/api/v1/devices/plain/override", {"pin": "7.7.7"}, token=admin), 404,
               "release-not-found")
    status, headers, doc = d.json("PUT", "/api/v1/devices/plain/override", {"pin": "1.2.0", "exclude": True},
                                  token=admin)
    problem_of(status, headers, doc, 400, "invalid-body")
    # A release a device is pinned to cannot be deleted.
    problem_of(*d.json("DELETE", "/api/v1/products/thermo/releases/1.2.0", token=admin), 409, "release-pinned")


def test_tags_per_device_and_in_bulk_filter_a_rollout(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    for i in range(6):
        offered_version(d, f"tag-{i}")
    wait_for(lambda: d.json("GET", "/api/v1/devices/tag-5", token=viewer)[0] == 200, 10, what="devices known")
    status, _, doc = d.json("PUT", "/api/v1/devices/tag-0/tags", {"tags": ["lab", "beta", "lab"]}, token=admin)
    assert status == 200 and doc["tags"] == ["beta", "lab"]
    problem_of(*d.json("PUT", "/api/v1/devices/tag-0/tags", {"tags": ["Not OK"]}, token=admin), 400, "invalid-tag")
    status, _, doc = d.json("POST", "/api/v1/products/thermo/devices/tags",
                            {"filter": {"version": "1.0.0", "tag": "lab"}, "add": ["canary"]}, token=admin)
    assert status == 200 and doc["devices"] == 1
    start_rollout(d, admin, [{"percent": 100}], filter={"tags": ["canary"]})
    assert offered_version(d, "tag-0") == "1.1.0"
    assert offered_version(d, "tag-1") is None
    _, _, view = d.json("GET", "/api/v1/devices/tag-1", token=viewer)
    assert view["tags"] == [] and view["release_choice"]["detail"] == "the device is outside the rollout's filter"
    status, _, doc = d.json("POST", "/api/v1/products/thermo/devices/tags", {"add": ["canary"]}, token=admin)
    assert doc["devices"] == 6
    assert offered_version(d, "tag-1") == "1.1.0"


# ---------------------------------------------------------------- command line

def test_otad_rollout_command_line(env):
    d, admin = env["d"], env["admin"]
    remote = ["--server", d.url(), "--cacert", d.cert_path, "--token", admin, "--product", "thermo"]
    out = run_otad(["rollout", "start"] + remote + ["--channel", "stable", "--version", "1.1.0", "--stage", "5:3600",
                                                    "--stage", "100", "--max-failure-ratio", "0.1",
                                                    "--chip", "esp32"]).stdout
    rid = int(re.search(r"rollout (\d+)", out).group(1))
    assert "thermo/stable  1.0.0 -> 1.1.0  running" in out
    assert re.search(r"^stage\s+percent\s+hold_s\s+eligible\s+offered", out, re.M)
    assert re.search(r"^0\s+5%\s+3600\s+0\s+0", out, re.M)
    listing = run_otad(["rollout", "status"] + remote).stdout
    assert re.search(rf"^{rid}\s+running\s+stable\s+1.0.0 -> 1.1.0\s+stage 0/2 \(5%\)", listing, re.M)
    assert "paused   by operator" in run_otad(["rollout", "pause"] + remote + [str(rid)]).stdout
    assert "running" in run_otad(["rollout", "resume"] + remote + [str(rid)]).stdout
    table = run_otad(["rollout", "advance"] + remote + [str(rid)]).stdout
    assert re.search(r"^1\s+100%\s+manual", table, re.M)
    doc = json.loads(run_otad(["rollout", "status"] + remote + [str(rid), "--json"]).stdout)
    assert doc["current_stage"] == 1
    assert "aborted" in run_otad(["rollout", "abort"] + remote + [str(rid)]).stdout
    again = run_otad(["rollout", "abort"] + remote + [str(rid)], check=False)
    assert again.returncode == 1 and "409 Conflict" in again.stderr and "aborted" in again.stderr


# ---------------------------------------------------------------- kill -9

def recount(db_path, rid):
    """Counters recomputed from the membership rows, per stage (read-only, beside the daemon)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        stored = con.execute("SELECT idx, eligible, offered, downloading, installed, failed, rolled_back, silent"
                             " FROM rollout_stages WHERE rollout_id = ? ORDER BY idx", (rid,)).fetchall()
        counted = {row[0]: row[1:] for row in con.execute(
            "SELECT stage, count(*), count(offered_at), sum(state = 'downloading'), sum(state = 'installed'),"
            " sum(state = 'failed'), sum(state = 'rolled_back'), sum(state = 'silent')"
            " FROM rollout_devices WHERE rollout_id = ? GROUP BY stage", (rid,))}
        return [tuple(r[1:]) for r in stored], [tuple(counted.get(r[0], (0,) * 7)) for r in stored]
    finally:
        con.close()


def test_kill_9_leaves_a_consistent_rollout_that_resumes(images):
    d = start(images)
    data_dir = d.data_dir
    try:
        admin = d.create_token("admin")
        catalogue(d, admin, images)
        doc, _ = start_rollout(d, admin, [{"percent": 50, "hold_s": 1}, {"percent": 100}], gate={"min_devices": 100000})
        rid = doc["id"]
        wait_for(lambda: rollout(d, admin, rid)["current_stage"] == 1, 20, what="the timed advance")

        # Devices poll and report while the daemon is killed.
        stop = threading.Event()

        def fleet(worker):
            i = 0
            while not stop.is_set() and i < 5000:
                dev = f"k{worker}-{i % 60}"
                try:
                    if offered_version(d, dev) == "1.1.0" and i % 3 == 0:
                        d.json("POST", f"/api/v1/devices/{dev}/report",
                               {"status": "failed" if i % 2 else "downloading", "version": "1.1.0"})
                except Exception:  # the daemon went away: expected
                    return
                i += 1

        threads = [threading.Thread(target=fleet, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        wait_for(lambda: rollout(d, admin, rid)["totals"]["offered"] >= 30, 30, what="some offers")
        status, _, _ = action(d, admin, rid, "pause")
        assert status == 200
        d.kill9()
        stop.set()
        for t in threads:
            t.join(30)

        stored, counted = recount(os.path.join(data_dir, "otad.db"), rid)
        assert stored == counted

        d2 = Otad(config_text=CONFIG, data_dir=data_dir)
        d2.log_path = os.path.join(data_dir, "otad-restart.log")  # a fresh log: its "listening" line is this run's
        d2.start()
        try:
            after = rollout(d2, admin, rid)
            assert after["state"] == "paused" and after["pause"]["reason"] == "operator"  # the pause survived
            assert after["current_stage"] == 1
            assert len(audit_entries(d2, admin, "rollout.advance")) == 1  # advanced once, not again
            status, _, doc = action(d2, admin, rid, "resume")
            assert status == 200 and doc["state"] == "running"
            status, _, doc = action(d2, admin, rid, "advance")
            assert doc["state"] == "completed"
            _, _, channel = d2.json("GET", "/api/v1/products/thermo/channels/stable", token=admin)
            assert channel["version"] == "1.1.0"
        finally:
            d2.stop()
    finally:
        d.cleanup()
