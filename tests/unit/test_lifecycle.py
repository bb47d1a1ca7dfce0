"""The lifecycle table: every row applies, everything else is refused, nobody writes around it."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from orchestrator.core.lifecycle import (MODULE_TRANSITIONS, RUNTIME_TRANSITIONS,
                                         IllegalTransition, born, transition)
from orchestrator.core.model import Module, ModuleStatus, Runtime, RuntimeStatus
from tests.support.harness import RT1, Harness, errors

CORE = Path(__file__).resolve().parents[2] / "orchestrator" / "core"


def runtime(status: str) -> Runtime:
    return Runtime(uuid="r", serial=1, name="r", status=status, changed_at=0.0)


def module(status: str) -> Module:
    return Module(uuid="m", serial=2, name="m", status=status, changed_at=0.0)


CASES = [(runtime, RuntimeStatus.ALL, RUNTIME_TRANSITIONS),
         (module, ModuleStatus.ALL, MODULE_TRANSITIONS)]


@pytest.mark.parametrize("make,statuses,table", CASES, ids=["runtime", "module"])
def test_every_pair_of_statuses_is_applied_or_refused_as_the_table_says(
        make, statuses, table) -> None:
    assert {s for pair in table for s in pair if s is not None} <= set(statuses)
    for old, new in itertools.product(statuses, statuses):
        record = make(old)
        if (old, new) in table:
            changed = transition(record, new, 5.0)
            assert (changed.status, changed.changed_at, changed.uuid) == (new, 5.0, record.uuid)
        else:
            with pytest.raises(IllegalTransition):
                transition(record, new, 5.0)
    for new in statuses:
        if (None, new) in table:
            assert born(make(new)).status == new
        else:
            with pytest.raises(IllegalTransition):
                born(make(new))


def test_every_row_says_why() -> None:
    for table in (MODULE_TRANSITIONS, RUNTIME_TRANSITIONS):
        assert all(why.strip() for why in table.values())


def test_a_transition_carries_the_other_changes() -> None:
    dead = transition(runtime(RuntimeStatus.ALIVE), RuntimeStatus.DEAD, 9.0, dead_reason="delete")
    assert (dead.status, dead.dead_reason, dead.changed_at) == ("dead", "delete", 9.0)


def test_no_status_is_written_around_the_table() -> None:
    """Outside lifecycle.py the core never sets ``status=`` on an existing record."""
    for path in CORE.glob("*.py"):
        if path.name == "lifecycle.py":
            continue
        text = path.read_text()
        for call in re.finditer(r"evolve\(([^()]|\([^()]*\))*\)", text):
            assert "status=" not in call.group(0), f"{path.name}: {call.group(0)}"


def test_a_refused_transition_changes_nothing_and_is_one_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness()
    h.register(RT1)
    monkeypatch.delitem(MODULE_TRANSITIONS, (ModuleStatus.QUEUED, ModuleStatus.ALIVE))
    out = h.create(uuid="m1", parent=RT1)
    assert [e["data"]["desc"] for e in errors(out)] == ["Uncaught exception"]
    assert len(out) == 1 and "m1" not in h.registry.modules
