"""A fresh virtual environment with this environment's packages but not the kit.

The handout's tests install its checker with plain pip, as a student would,
and must not download torch again (gigabytes) nor see the kit under test. So
the new venv gets every installed distribution of the running environment
(hard links: a second, no extra disk) except attnkit itself and its editable
hooks, and pip then resolves the checker's dependencies against those.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parents[1]


def _ours(entry: Path) -> bool:
    """The kit's own files in site-packages: its package, dist-info, editable finder and .pth hooks."""
    if "attnkit" in entry.name.lower():
        return True
    if entry.suffix == ".pth":
        return str(KIT_ROOT) in entry.read_text(errors="replace")
    return False


def _link_tree(src: Path, dst: Path) -> None:
    try:
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
        else:
            os.link(src, dst)
    except OSError:  # another file system: a link to the whole entry serves as well
        shutil.rmtree(dst, ignore_errors=True)
        dst.unlink(missing_ok=True)
        dst.symlink_to(src)


def site_packages(prefix: Path) -> Path:
    return Path(sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})["purelib"])


def create(prefix: Path) -> Path:
    """A venv at ``prefix`` holding the running environment's packages, attnkit excluded; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    target = site_packages(prefix)
    for source in sorted({Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])}):
        for entry in sorted(source.iterdir()):
            if not _ours(entry) and not (target / entry.name).exists():
                _link_tree(entry, target / entry.name)
    python = prefix / ("Scripts" if os.name == "nt" else "bin") / "python"
    # pytest's console script, as pip writes it when it installs pytest
    script = python.with_name("pytest")
    script.write_text(f"#!{python}\nimport sys\nfrom pytest import console_main\nsys.exit(console_main())\n")
    script.chmod(0o755)
    return python
