"""The service's layers, enforced: imports point one way only, and only `api/` knows HTTP.

    base (config, problems, metrics, jsonlog)
      -> storage -> tlog -> writer -> usecases (+ state) -> api -> app -> ops

A module may import its own layer and those before it, never one after it; the base modules
import only each other. Use cases, storage, the log and the writer import no web framework or
CLI library, and no module of `service/` is part of an import cycle (imports inside functions
count: a deferred import is still a dependency). See docs/architecture.md.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"
PACKAGE = "liaison.service"

#: Layer of each top-level name under service/ (a module or a subpackage), lowest first.
LAYERS: dict[str, int] = {
    "config": 0,
    "problems": 0,
    "metrics": 0,
    "jsonlog": 0,
    "storage": 1,
    "tlog": 2,
    "writer": 3,
    "usecases": 4,
    "state": 4,
    "api": 5,
    "app": 6,
    "ops": 7,
}
BASE = 0
FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "typer")
#: Layers that must never import a framework (everything below api/).
FRAMEWORK_FREE = {
    "config",
    "problems",
    "metrics",
    "jsonlog",
    "storage",
    "tlog",
    "writer",
    "usecases",
    "state",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SERVICE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def service_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SERVICE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """Absolute names of everything `path` imports, anywhere in the file; an imported name
    that is itself a module of the service counts as that module."""
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
    return out


def layer_of(module: str) -> str:
    return module.removeprefix(PACKAGE + ".").split(".")[0]


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Every import against the layering, and every framework import below api/."""
    found = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for target in sorted(targets):
            top = target.split(".")[0]
            if top in FRAMEWORKS and here in FRAMEWORK_FREE:
                found.append(f"{module} imports {target}: only api/ and above may know {top}")
            if not target.startswith(PACKAGE + ".") or target == PACKAGE:
                continue
            there = layer_of(target)
            if there not in LAYERS or here not in LAYERS:
                found.append(f"{module} or {target} is in no layer: add it to LAYERS")
            elif LAYERS[there] > LAYERS[here] or (LAYERS[here] == BASE and LAYERS[there] != BASE):
                found.append(f"{module} ({here}) imports {target} ({there}), a later layer")
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a self-import."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def service_graph() -> dict[str, set[str]]:
    modules = service_modules()
    graph = {}
    for name, path in modules.items():
        # A package's __init__ is imported on the way to its submodules: not an edge to follow.
        graph[name] = {
            t
            for t in imports_of(name, path, modules)
            if not (t in modules and modules[t].name == "__init__.py")
        }
    return graph


def test_every_module_of_the_service_is_in_a_layer() -> None:
    assert {layer_of(m) for m in service_modules() if m != PACKAGE} <= set(LAYERS) | {"default_policy"}


def test_imports_point_one_way_and_only_api_knows_http() -> None:
    assert violations(service_graph()) == []


def test_no_import_cycle_in_the_service() -> None:
    assert cycles(service_graph()) == []


# --- the checks themselves catch what they are for ------------------------------------------


def test_the_checks_find_each_kind_of_violation() -> None:
    s = PACKAGE
    bad = {
        f"{s}.storage.db": {f"{s}.usecases.auth"},  # storage importing a use case
        f"{s}.usecases.messaging": {"fastapi.responses", f"{s}.writer"},  # HTTP in a use case
        f"{s}.writer": {"typer"},
        f"{s}.problems": {f"{s}.storage.db"},  # a base module importing a layer
        f"{s}.api.hot": {f"{s}.app"},  # api importing the app
        f"{s}.newthing": set(),
        f"{s}.ops.cli": {f"{s}.newthing"},
    }
    found = violations(bad)
    assert any("storage.db (storage) imports" in v for v in found)
    assert any("usecases.messaging imports fastapi" in v for v in found)
    assert any("writer imports typer" in v for v in found)
    assert any("problems (problems) imports" in v for v in found)
    assert any("api.hot (api) imports" in v for v in found)
    assert any("newthing is in no layer" in v for v in found)
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_deferred_and_relative_imports_are_seen(tmp_path: Path) -> None:
    src = tmp_path / "mod.py"
    src.write_text(
        "from . import writer\nfrom ..api import hot\ndef f():\n"
        "    from .storage.db import Database\n    import uvicorn\n"
    )
    name = f"{PACKAGE}.usecases.mod"
    known = {f"{PACKAGE}.usecases.writer", f"{PACKAGE}.api.hot"}
    got = imports_of(name, src, known)
    assert {
        f"{PACKAGE}.usecases.writer",
        f"{PACKAGE}.api.hot",
        f"{PACKAGE}.usecases.storage.db",
        "uvicorn",
    } <= got


@pytest.mark.parametrize("layer", sorted(FRAMEWORK_FREE))
def test_framework_free_layers_exist(layer: str) -> None:
    names = {layer_of(m) for m in service_modules()}
    assert layer in names, f"{layer} is listed but has no module"
