"""Dead objects are forgotten after the retention period (and only then)."""

from __future__ import annotations

from orchestrator.core.model import ModuleStatus
from tests.support.harness import RT1, RT2, Harness

DAY = 86400.0


def test_prune_drops_only_what_died_before_the_retention_period() -> None:
    h = Harness(retention_days=7)
    h.register(RT1)
    h.register(RT2)
    h.create(uuid="old-dead", parent=RT1)
    h.create(uuid="alive", parent=RT1)
    h.create(uuid="on-rt2", parent=RT2)
    h.exited("old-dead")
    h.deregister(RT2)                              # on-rt2 becomes killed
    h.now += 6 * DAY
    h.create(uuid="recent-dead", parent=RT1)
    h.exited("recent-dead")

    h.core.prune(h.now)
    assert set(h.registry.modules) == {"old-dead", "alive", "on-rt2", "recent-dead"}

    h.now += 1.5 * DAY                             # 7.5 days after the first deaths
    h.core.prune(h.now)
    changes = h.registry.take_changes()
    assert set(h.registry.runtimes) == {RT1}
    assert set(h.registry.modules) == {"alive", "recent-dead"}
    assert changes == {("module", "old-dead"): None, ("module", "on-rt2"): None,
                       ("runtime", RT2): None}
    assert h.registry.modules["alive"].status == ModuleStatus.ALIVE

    h.now += 7 * DAY
    h.core.prune(h.now)
    assert set(h.registry.modules) == {"alive"}
    assert h.registry.module_counts[ModuleStatus.DEAD] == 0
