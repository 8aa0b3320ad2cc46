"""The files the kit writes, from templates shipped as package data.

Each room keeps the templates of what it writes in its own ``templates/``
folder (``outputs/templates/feedback.html.j2``, ``frontends/templates/setup.sh.j2``,
...), declared in pyproject's package-data, so that a pip-installed checker,
a wheel and the Gradescope bundle carry them; they are read with
``importlib.resources``, never from a path of the checkout.

Two jinja2 environments. HTML escapes every value by default: what a
submission produced (reasons, numbers, tracebacks, names, notes) must never
become markup, and markup the kit made itself is passed as ``Markup`` on
purpose. Text files (shell scripts, Python, YAML, Markdown) are filled as
they are. Both refuse a value the template names but was not given.
jinja2 is imported on first use: the student's kernel and the sandbox never
need it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

TEMPLATES = "templates"  # the folder next to the modules that write them


def source(package: str, name: str) -> str:
    """The text of ``<package>/templates/<name>``, as the installed package holds it."""
    return (resources.files(package) / TEMPLATES / name).read_text(encoding="utf-8")


def _load(name: str):
    package, _, file = name.partition(":")
    text = source(package, file)
    return text, f"{package}:{TEMPLATES}/{file}", lambda: True  # package data does not change under a run


@cache
def environment(html: bool):
    """The environment for HTML (``html=True``: autoescaping) or for plain text files."""
    import jinja2

    return jinja2.Environment(loader=jinja2.FunctionLoader(_load), autoescape=html, undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def template(package: str, name: str):
    """``<package>/templates/<name>``, compiled once per process; ``.html`` ones escape by default."""
    return environment(name.removesuffix(".j2").endswith(".html")).get_template(f"{package}:{name}")


def render(package: str, name: str, **values) -> str:
    return template(package, name).render(**values)
