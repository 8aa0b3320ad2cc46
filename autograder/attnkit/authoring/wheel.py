"""A pure-Python wheel of a package folder, written without a build backend.

The handout's checker is hosted by the instructor and pinned by its sha256 in
the GitHub Classroom workflow, so its wheel must come out byte for byte the
same from the same files: fixed timestamps and modes, files in sorted order.
Writing it here also keeps ``attnkit handout`` free of setuptools and of the
network. The format: PEP 427 (the zip, ``RECORD``) and the core metadata.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from attnkit.authoring.distribution import Distribution

EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold


def filename(dist: Distribution) -> str:
    return f"{dist.name}-{dist.version}-py3-none-any.whl"


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def metadata(dist: Distribution) -> dict[str, str]:
    """The dist-info files other than RECORD."""
    meta = ["Metadata-Version: 2.1", f"Name: {dist.name}", f"Version: {dist.version}",
            f"Summary: {dist.summary}", f"Requires-Python: {dist.requires_python}"]
    meta += [f"Requires-Dist: {d}" for d in dist.dependencies]
    points = []
    for group, entries in dist.entry_points.items():
        points += [f"[{group}]"] + [f"{name} = {target}" for name, target in entries.items()] + [""]
    return {"METADATA": "\n".join(meta) + "\n",
            "WHEEL": "Wheel-Version: 1.0\nGenerator: attnkit.authoring.wheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
            "entry_points.txt": "\n".join(points),
            "top_level.txt": f"{dist.name}\n"}


def build(package: Path, dist: Distribution, out_dir: Path) -> Path:
    """Write ``out_dir/<name>-<version>-py3-none-any.whl`` holding every file under ``package``
    (a folder named like the distribution's import package)."""
    files = {f"{package.name}/{p.relative_to(package).as_posix()}": p.read_bytes()
             for p in sorted(package.rglob("*")) if p.is_file()}
    info = f"{dist.name}-{dist.version}.dist-info"
    files.update({f"{info}/{name}": text.encode() for name, text in metadata(dist).items()})
    record = "".join(f"{name},{_digest(data)},{len(data)}\n" for name, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename(dist)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=EPOCH)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
