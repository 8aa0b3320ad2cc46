"""The kit's distribution as its ``pyproject.toml`` declares it.

The handout's checker (its ``pyproject.toml`` and its wheel) and the Gradescope
bundle (its ``requirements.txt``) take the Python floor, the dependencies and
the entry points from here, so there is one list of each, in the kit's
``pyproject.toml``. Reading it needs the kit's repository, as ``attnkit
handout`` and ``attnkit gradescope-bundle`` do anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

from attnkit import __version__
from attnkit.exercises import tomllib
from attnkit.errors import GraderError
from attnkit.config import KIT_ROOT


@dataclass(frozen=True)
class Distribution:
    name: str
    version: str
    summary: str
    requires_python: str
    dependencies: tuple[str, ...]
    entry_points: dict  # group -> {name: "module:attr"}; console scripts under "console_scripts"
    package_data: tuple[str, ...]  # patterns of non-Python files inside the package

    def pyproject(self, comment: str) -> str:
        """A ``pyproject.toml`` that installs the package in the folder next to it (setuptools finds
        every subpackage itself), with these dependencies and entry points."""
        q = json.dumps  # a JSON string is a TOML basic string
        lines = [f"# {line}" for line in comment.splitlines()]
        lines += ["[build-system]", 'requires = ["setuptools>=68"]', 'build-backend = "setuptools.build_meta"', "",
                  "[project]", f"name = {q(self.name)}", f"version = {q(self.version)}",
                  f"description = {q(self.summary)}", f"requires-python = {q(self.requires_python)}",
                  "dependencies = ["] + [f"    {q(d)}," for d in self.dependencies] + ["]"]
        for group, points in self.entry_points.items():
            lines += ["", "[project.scripts]" if group == "console_scripts" else f"[project.entry-points.{group}]"]
            lines += [f"{name} = {q(target)}" for name, target in points.items()]
        lines += ["", "[tool.setuptools.packages.find]", f"include = [{q(self.name)}, {q(self.name + '.*')}]",
                  "", "[tool.setuptools.package-data]",
                  f"{self.name} = [{', '.join(q(p) for p in self.package_data)}]"]
        return "\n".join(lines) + "\n"


@cache
def kit() -> Distribution:
    path = KIT_ROOT / "pyproject.toml"
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError:
        raise GraderError(f"{path} is missing: this command runs from the kit's repository") from None
    project = data["project"]
    entry_points = {"console_scripts": dict(project.get("scripts", {}))}
    entry_points.update({group: dict(points) for group, points in project.get("entry-points", {}).items()})
    return Distribution(project["name"], __version__, project["description"], project["requires-python"],
                        tuple(project["dependencies"]), entry_points,
                        tuple(data["tool"]["setuptools"]["package-data"]["attnkit"]))
