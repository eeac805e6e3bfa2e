"""The floors of the house, checked over the import graph (every ``import``, also inside
functions): the core imports no role and not the roof; a role imports the core only, never a
sibling and never the roof; only the roof (the CLI) imports roles; and only the Kafka client
module reaches into client internals.

Read from the source with :mod:`ast`, so a new module is covered the day it is added.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("streams", "gateway", "trainer", "producers")
ROOF = ("irisflow.cli", "irisflow.local")
KAFKA_CLIENT_MODULE = "irisflow.kafka.clients"
CLIENT_INTERNALS = ("_client", "_bootstrap_servers", "_ensure_producer", "_coordinator", "_fetcher")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources(*packages: str) -> Iterator[tuple[str, ast.Module]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield _module(path), ast.parse(path.read_text(), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in packages)


def _core() -> Iterator[tuple[str, ast.Module]]:
    return ((m, t) for m, t in _sources("irisflow") if not _within(m, ROOF))


def test_the_core_imports_no_role_and_not_the_roof() -> None:
    offences = {
        module: sorted(i for i in _imports(tree) if _within(i, ROLES + ROOF))
        for module, tree in _core()
    }
    assert {m: i for m, i in offences.items() if i} == {}


@pytest.mark.parametrize("role", ROLES)
def test_a_role_imports_the_core_only_never_a_sibling_or_the_roof(role: str) -> None:
    others = tuple(r for r in ROLES if r != role) + ROOF
    offences = {
        module: sorted(i for i in _imports(tree) if _within(i, others))
        for module, tree in _sources(role)
    }
    assert {m: i for m, i in offences.items() if i} == {}


def test_the_local_machinery_starts_roles_as_processes_and_imports_none() -> None:
    offences = {
        module: sorted(i for i in _imports(tree) if _within(i, (*ROLES, "irisflow.cli")))
        for module, tree in _sources("irisflow/local")
    }
    assert {m: i for m, i in offences.items() if i} == {}


def test_nothing_imports_the_roof() -> None:
    everything = [*_sources("irisflow", *ROLES)]
    offences = {
        module: sorted(i for i in _imports(tree) if _within(i, ("irisflow.cli",)))
        for module, tree in everything
        if not _within(module, ("irisflow.cli",))
    }
    assert {m: i for m, i in offences.items() if i} == {}


def test_only_the_kafka_client_module_touches_client_internals() -> None:
    offences: dict[str, list[str]] = {}
    for module, tree in _sources("irisflow", *ROLES):
        if module == KAFKA_CLIENT_MODULE:
            continue
        touched = sorted(
            {
                node.attr
                for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and node.attr in CLIENT_INTERNALS
            }
        )
        if touched:
            offences[module] = touched
    assert offences == {}


def test_the_graph_is_read_at_all() -> None:
    """Guard against a vacuous pass: the scan sees the modules and imports it checks."""
    modules = dict(_sources("irisflow", *ROLES))
    assert {"irisflow.topics", "irisflow.cli.main", "streams.app", "gateway.app"} <= set(modules)
    assert any(name.startswith("streams.") for name in _imports(modules["irisflow.cli.roles"]))
