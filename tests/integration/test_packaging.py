"""twistd can find the plugin, from the checkout and from a built wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins

ROOT = Path(__file__).resolve().parents[2]


def test_plugin_is_discoverable() -> None:
    assert "silverline" in {p.tapname for p in getPlugins(IServiceMaker)}


def test_no_package_markers_that_would_hide_the_plugin() -> None:
    assert not (ROOT / "twisted" / "__init__.py").exists()
    assert not (ROOT / "twisted" / "plugins" / "__init__.py").exists()


def test_wheel_contains_the_plugin(tmp_path: Path) -> None:
    # build from a clean copy of the tracked files: a stale build/ could hide a packaging bug
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist"), str(src)], check=True)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/silverline_plugin.py" in names
    assert "orchestrator/tap.py" in names
    assert not any(n.startswith("twisted/plugins/__init__") for n in names)


def _make_dry_run(target: str) -> str:
    return subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent/venv"], cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout


def test_make_run_installs_only_what_the_service_needs() -> None:
    pip = [line for line in _make_dry_run("run").splitlines() if "pip install" in line]
    assert pip and all("[test]" not in line for line in pip)
    assert any("'.[test]'" in line for line in _make_dry_run("test").splitlines())
