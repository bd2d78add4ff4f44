"""The project as users get it: built from a source tree into an sdist, a wheel built from that
sdist, the wheel installed non-editably into a fresh virtual environment.

The new environment sees the test environment's third-party packages (a path line in a `.pth`
file, so the test environment's own `.pth` files, its editable finder among them, are not run)
and none of the checkout. An audit hook in every process started from it records each `bot` or
`generator` file Python reads, so a test can prove where the running code came from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "generator")
IMPORTS_VARIABLE = "PSEUDO_DALLE_TEST_IMPORTS"

# Runs in every interpreter of the new environment before any other import.
_AUDIT = f'''
import os, sys

_LOG = os.environ.get("{IMPORTS_VARIABLE}")


def _record(event, args):
    if event != "open" or not _LOG or not isinstance(args[0], str):
        return
    path = args[0]
    if path.endswith((".py", ".pyc")) and ("/bot/" in path or "/generator/" in path):
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{{os.getpid()}} {{path}}\\n".encode())
        finally:
            os.close(fd)


sys.addaudithook(_record)
'''

_BUILD = (
    "import sys, setuptools.build_meta as backend; "
    "print(getattr(backend, sys.argv[1])(sys.argv[2]))"
)


@dataclass(frozen=True)
class Installed:
    venv: Path
    sdist: Path
    wheel: Path
    imports_log: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a user who installed the package: its scripts first on PATH, no
        PYTHONPATH, imports recorded."""
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        path = f"{self.bin}{os.pathsep}{environ.get('PATH', '')}"
        return {**environ, "PATH": path, IMPORTS_VARIABLE: str(self.imports_log), **extra}

    def files_read(self) -> dict[int, list[Path]]:
        """The `bot` and `generator` files each process (by pid) has read so far."""
        read: dict[int, list[Path]] = {}
        if self.imports_log.exists():
            for line in self.imports_log.read_text().splitlines():
                pid, path = line.split(" ", 1)
                read.setdefault(int(pid), []).append(Path(path))
        return read


def _run(args: list[str], cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def copy_checkout(target: Path) -> Path:
    """The checkout's files, without what building or testing it left behind."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "out"
    )
    shutil.copytree(ROOT, target, ignore=ignore)
    return target


def build_and_install(source: Path, work: Path) -> Installed:
    """Build `source` (a project folder) as pip would and install it into `work/venv`."""
    dist = work / "dist"
    dist.mkdir(parents=True)
    sdist = (
        dist
        / _run([sys.executable, "-c", _BUILD, "build_sdist", str(dist)], source).splitlines()[-1]
    )
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    wheel = (
        dist
        / _run([sys.executable, "-c", _BUILD, "build_wheel", str(dist)], unpacked).splitlines()[-1]
    )
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin/python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        work,
    )
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(_run([str(venv / "bin/python"), "-c", purelib], work).strip())
    (site / "_pseudo_dalle_audit.py").write_text(_AUDIT)
    (site / "00-pseudo-dalle-audit.pth").write_text("import _pseudo_dalle_audit\n")
    (site / "zz-test-environment.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return Installed(venv, sdist, wheel, work / "imports.log")


def archive_names(path: Path) -> set[str]:
    """The files in a wheel (paths as installed) or an sdist (paths inside the project)."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return set(wheel.namelist())
    with tarfile.open(path) as sdist:
        return {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}


def data_files(tree: Path) -> set[str]:
    """The files under the packages of `tree` that are not Python source."""
    return {
        path.relative_to(tree).as_posix()
        for package in PACKAGES
        for path in (tree / package).rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    }
