"""Properties of the core under arbitrary input (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.harness import RT1, RT2, Harness

M1 = "b241e483-0000-4000-8000-000000000001"

TOPICS = ["reg", f"reg/{RT1}", "control", f"control/{RT1}", "keepalive", f"keepalive/{RT2}"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)

VALID = [
    ("reg", {"object_id": "r", "action": "create", "type": "arts_req",
             "data": {"type": "runtime", "uuid": RT2, "name": "x", "max_nmodules": 2}}),
    ("reg", {"object_id": "r", "action": "delete", "type": "arts_req",
             "data": {"type": "runtime", "uuid": RT1}}),
    ("control", {"object_id": "c", "action": "create", "type": "arts_req",
                 "data": {"type": "module", "uuid": "m-new", "parent": RT1,
                          "args": ["a"], "fault_crash": "restart"}}),
    ("control", {"object_id": "c", "action": "delete", "type": "arts_req",
                 "data": {"uuid": M1}}),
    ("control", {"object_id": "c", "action": "exited", "type": "arts_req",
                 "data": {"type": "module", "uuid": M1}}),
    ("keepalive", {"object_id": "k", "action": "update", "type": "arts_req",
                   "data": {"type": "runtime", "uuid": RT1, "children": [{"uuid": M1}]}}),
]


@st.composite
def mutated(draw: Any) -> tuple[str, Any]:
    """A valid message with one key (outer or in data) replaced, removed or added."""
    topic, msg = draw(st.sampled_from(VALID))
    msg = json.loads(json.dumps(msg))
    target = draw(st.sampled_from([msg, msg["data"]]))
    key = draw(st.sampled_from(sorted(target) + ["extra"]))
    if draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = draw(json_values)
    return topic, msg


def fresh() -> Harness:
    h = Harness()
    h.register(max_nmodules=3)
    h.create(uuid=M1, parent=RT1)
    return h


def state(h: Harness) -> tuple[dict, dict]:
    return dict(h.registry.runtimes), dict(h.registry.modules)


def check_one(topic: str, payload: bytes) -> None:
    h = fresh()
    before = state(h)
    out = h.core.handle(f"realm/proc/{topic}", payload, h.now).effects   # must not raise
    errs = [e for e in out if getattr(e, "topic", "").endswith("/log/orchestrator")]
    assert all(e.payload["data"]["desc"] != "Uncaught exception" for e in errs), errs
    if errs:
        assert len(out) == 1, "an error comes alone"
        assert state(h) == before, "an error changes nothing"
    # whatever happened, the next valid message is handled normally
    assert h.create(object_id="after", uuid="m-after", parent=RT1)


SETTINGS = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.sampled_from(TOPICS), st.binary(max_size=300))
def test_random_bytes(topic: str, payload: bytes) -> None:
    check_one(topic, payload)


@SETTINGS
@given(st.sampled_from(TOPICS), json_values)
def test_random_json(topic: str, value: Any) -> None:
    check_one(topic, json.dumps(value).encode())


@SETTINGS
@given(mutated(), st.sampled_from(TOPICS))
def test_mutated_valid_messages(message: tuple[str, Any], topic: str) -> None:
    check_one(message[0], json.dumps(message[1]).encode())
    check_one(topic, json.dumps(message[1]).encode())
