"""Source plugins: the built-in ones are registered, and a third-party package installed with pip
(tests/plugin_example, the example of docs/plugins.md) becomes `voicewatch source tone` and feeds a core."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_harness import Daemon
from voicewatch.plugins import registry

EXAMPLE = Path(__file__).parent / "plugin_example"


def test_the_built_in_sources_are_registered_by_entry_point() -> None:
    assert {"replay", "dvb", "live"} <= set(registry.available())
    assert registry.load("dvb").name == "dvb"
    with pytest.raises(registry.PluginError, match="no source plugin named 'nope'; installed: .*dvb"):
        registry.load("nope")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The example installed as users would (pip, its own entry points), into a folder of its own so that
    the shared environment stays as it was; returns the environment that sees it."""
    folder = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, folder / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = folder / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                             "--target", str(target), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}


def test_a_pip_installed_third_party_source_feeds_a_core(installed: dict[str, str], tmp_path: Path) -> None:
    listing = subprocess.run([sys.executable, "-m", "voicewatch", "source", "--help"], capture_output=True, text=True,
                             env=installed, timeout=120)
    assert "tone" in listing.stdout
    core = Daemon(tmp_path)
    try:
        result = subprocess.run([sys.executable, "-m", "voicewatch", "source", "tone", "--connect", core.ingest,
                                 "--stream", "beep", "--seconds", "2.5"], capture_output=True, text=True,
                                env=installed, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "sent 25 frames of a 440 Hz tone as stream beep" in result.stderr
        core.wait_for_eos("beep")
    finally:
        assert core.stop() == 0
    eos = [e for e in core.events_of("beep") if e.reason == "eos"]
    assert len(eos) == 1 and eos[0].end == pytest.approx(2.5)


def test_a_broken_plugin_is_left_out_and_named_not_fatal(tmp_path: Path) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[voicewatch.plugins]\nbroken = no_such_module:Source\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    listing = subprocess.run([sys.executable, "-m", "voicewatch", "source", "--help"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert listing.returncode == 0 and "dvb" in listing.stdout and "broken" not in listing.stdout
    code = "from voicewatch.plugins import registry; registry.load('broken')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "source plugin 'broken' cannot be imported: No module named 'no_such_module'" in result.stderr


REPO = Path(__file__).parent.parent


def test_the_source_unit_runs_the_instance_yaml_hardened() -> None:
    unit = (REPO / "systemd" / "voicewatch-source@.service").read_text()
    for option in ("ExecStart=/usr/bin/env voicewatch source-config /etc/voicewatch/sources/%i.yaml",
                   "Restart=on-failure", "DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                   "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet="):
        assert option in unit


@pytest.mark.parametrize("example", sorted((REPO / "docs" / "sources").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_documented_source_file_parses_with_its_plugin(example: Path) -> None:
    import argparse

    import yaml

    spec = yaml.safe_load(example.read_text())
    assert set(spec) == {"plugin", "args"}
    plugin = registry.load(spec["plugin"])
    parser = argparse.ArgumentParser(exit_on_error=False)
    plugin.add_arguments(parser)
    parser.parse_args([str(a) for a in spec["args"]])
