"""voicewatch installed from its wheel or its sdist, not from the source tree: everything it needs at run time
is in the package, so the demo runs and a speaker can be enrolled from the shipped clips."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_OUTPUTS = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                       ".pytest_cache", ".ruff_cache", ".mypy_cache", "corpus", "runs")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the source tree without build outputs: a build never reuses stale files or writes into the repo."""
    tree = tmp_path_factory.mktemp("source") / "voicewatch"
    shutil.copytree(ROOT, tree, ignore=BUILD_OUTPUTS)
    return tree


def pip(*args: str | Path) -> None:
    """pip of this interpreter, offline: the build backend and the dependencies are the ones installed here."""
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def build(form: str, source: Path, into: Path) -> Path:
    if form == "wheel":
        pip("wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", into, source)
        return next(into.glob("voicewatch-*.whl"))
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(into)], cwd=source, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return into / done.stdout.split()[-1]


def fresh_environment(path: Path) -> Path:
    """A new virtual environment without voicewatch that borrows this one's dependencies (torch and the rest) through
    a .pth file: appended to sys.path after the environment's own site-packages, its .pth files (this checkout's
    editable install) are never run."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def installed_files(python: Path) -> tuple[Path, set[str]]:
    code = "import voicewatch, pathlib; print(pathlib.Path(voicewatch.__file__).parent)"
    package = Path(subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True,
                                  cwd=python.parent).stdout.strip())
    return package, {p.relative_to(package).as_posix() for p in package.rglob("*")
                     if p.is_file() and "__pycache__" not in p.parts}


def source_files(source: Path) -> set[str]:
    """The package as setup.cfg maps it: daemon/ is voicewatch, plugins/ is voicewatch.plugins."""
    files = {p.relative_to(source / "daemon").as_posix() for p in (source / "daemon").rglob("*") if p.is_file()}
    return files | {"plugins/" + p.relative_to(source / "plugins").as_posix()
                    for p in (source / "plugins").rglob("*") if p.is_file()}


@pytest.mark.parametrize("form", ["wheel", "sdist"])
def test_an_installed_package_runs_the_demo_and_enrolls_from_its_shipped_clips(form: str, source: Path,
                                                                                 tmp_path: Path) -> None:
    dist = build(form, source, tmp_path / "dist")
    if form == "sdist":
        with tarfile.open(dist) as sdist:
            names = sdist.getnames()
        top = names[0].split("/")[0]
        assert {f"{top}/{name}" for name in ("README.md", "LICENSE", "config.yaml", "MANIFEST.in")} <= set(names)
    python = fresh_environment(tmp_path / "env")
    pip("--python", python, "install", "--no-deps", "--no-index", "--no-build-isolation", dist)

    package, files = installed_files(python)
    assert package.is_relative_to(tmp_path / "env")  # the installed copy, not this checkout
    assert files == source_files(source)  # every file of the package: code, model, demo, enrollment clips, web page

    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ["PATH"] = f"{python.parent}{os.pathsep}{environ.get('PATH', '')}"
    run = lambda *args: subprocess.run(["voicewatch", *args], cwd=tmp_path, env=environ,  # noqa: E731
                                       capture_output=True, text=True, timeout=300)
    demo = run("demo")
    assert demo.returncode == 0, demo.stderr
    assert "alice: timeline F1 0.9" in demo.stdout, demo.stdout

    clips = sorted(str(p) for p in (package / "assets" / "enroll" / "alice").glob("*.flac"))
    assert clips
    enroll = run("enroll", "alice", *clips, "--bank", str(tmp_path / "bank.safetensors"))
    assert enroll.returncode == 0, enroll.stderr
    scan = run("scan", str(package / "assets" / "demo.flac"), "--bank", str(tmp_path / "bank.safetensors"))
    assert scan.returncode == 0, scan.stderr
    assert [line.split()[1] for line in scan.stdout.splitlines()] == ["alice"] * 3  # alice's three turns
