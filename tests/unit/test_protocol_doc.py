"""docs/protocol.md stays true to the code: what the code can say is documented there."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
CORE = "\n".join(p.read_text(encoding="utf-8")
                 for p in sorted((ROOT / "orchestrator" / "core").glob("*.py")))


def _found(pattern: str) -> list[str]:
    return sorted(set(re.findall(pattern, CORE)))


@pytest.mark.parametrize("desc", _found(r'ProtocolError\(\s*"([^"]+)"') + ["Uncaught exception"])
def test_every_error_desc_is_documented(desc: str) -> None:
    assert f"`{desc}`" in DOC


@pytest.mark.parametrize("action", _found(r'\.notify\(\s*"([^"]+)"'))
def test_every_notification_is_documented(action: str) -> None:
    assert re.search(rf"^\| `{re.escape(action)}` \|", DOC, re.M), action


def test_every_json_example_parses() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC, re.S)
    assert len(blocks) > 15
    for block in blocks:
        json.loads(block)


def test_every_topic_is_documented() -> None:
    from orchestrator.core.topics import Topics
    topics = Topics("R")
    for topic in (topics.reg, topics.control, topics.keepalive, topics.log, topics.notif,
                  topics.status, topics.control_for("{uuid}")):
        assert f"`{topic}" in DOC, topic


def test_every_section_the_code_cites_exists() -> None:
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", DOC, re.M))
    cited: set[tuple[str, str]] = set()
    for folder in ("orchestrator", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            if path == pathlib.Path(__file__).resolve():
                continue
            text = path.read_text(encoding="utf-8")
            for ref in re.findall(r"protocol\.md(?: section| sections)? (\d+(?:\.\d+)?)", text):
                cited.add((ref, str(path.relative_to(ROOT))))
            assert not re.search(r"(?<!docs/)protocol\.md", text), (
                f"{path}: cite docs/protocol.md (the shared spec's numbering differs)")
    missing = sorted(c for c in cited if c[0] not in headings)
    assert not missing, missing
