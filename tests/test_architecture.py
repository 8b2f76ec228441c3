"""The shape of the code, held in CI: the import graph (every import, those inside functions and under
TYPE_CHECKING included) has no cycle and its layers only import downwards (the contracts in
.importlinter, checked by import-linter and again here without it); no module takes another's private
name; the web app uses the library's public API only; settings.py alone reads the environment."""

from __future__ import annotations

import ast
import configparser
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mmsearch"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> Iterator[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import in the module, wherever it is."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    yield sub, None, node.lineno  # `from . import ocr`: the module itself
                else:
                    yield base, alias.name, node.lineno


def _owner(module: str) -> str | None:
    """The mmsearch module that `module` names (a dotted name may run past it: `a.b.Class`)."""
    while module and module not in MODULES:
        module = module.rpartition(".")[0]
    return module or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name in MODULES:
        for target, _, _ in _imports(name):
            owner = _owner(target) if target.startswith("mmsearch") else None
            if owner and owner != name and not name.startswith(owner + "."):  # a package's children import it
                graph[name].add(owner)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def _contracts() -> list[tuple[str, list[list[str]]]]:
    """The layers contracts of .importlinter: (container, its layers top first, each a list of siblings)."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    out = []
    for section in config.sections():
        if config[section].get("type") != "layers":
            continue
        container = config[section]["containers"].strip()
        layers = []
        for line in config[section]["layers"].strip().splitlines():
            assert ":" not in line, "siblings here are independent (|): a layer may not import its siblings"
            layers.append([f"{container}.{s.strip()}" for s in line.split("|") if s.strip()])
        out.append((container, layers))
    return out


def _placed(module: str, layer_of: dict[str, int]) -> str | None:
    """The module of the contract that `module` is, or is inside."""
    while module:
        if module in layer_of:
            return module
        module = module.rpartition(".")[0]
    return None


def test_layers_only_import_downwards():
    """The contracts import-linter checks (below), held here by the graph above, so a checkout without
    the dev tools holds them too: in each container, a module imports only the layers below its own,
    never a sibling of its layer; and every module of the container has a layer."""
    graph = _graph()
    problems = []
    for container, layers in _contracts():
        layer_of = {module: depth for depth, siblings in enumerate(layers) for module in siblings}
        inside = [m for m in MODULES if m.startswith(container + ".")]
        problems += [f"{m}: in no layer of {container}" for m in inside if _placed(m, layer_of) is None]
        for module in inside:
            here = _placed(module, layer_of)
            for target in graph[module]:
                there = _placed(target, layer_of)
                if here is None or there is None or there == here:
                    continue  # outside this container, or within one layer's module
                if layer_of[there] <= layer_of[here]:
                    problems.append(f"{module} -> {target}")
    assert problems == []


def test_import_linter_holds_the_contracts():
    if shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("import-linter comes with the dev extra (pip install -e '.[dev]')")
    proc = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_takes_another_modules_private_name():
    """Neither `from .x import _name` nor `x._name` on a module imported as `x`."""
    found = []
    for name, path in MODULES.items():
        aliases: dict[str, str] = {}
        for target, taken, line in _imports(name):
            owner = _owner(target) if target.startswith("mmsearch") else None
            if owner is None or owner == name:
                continue
            if taken is not None and _private(taken):
                found.append(f"{name}:{line} takes {owner}.{taken}")
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("mmsearch"):
                        aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        modules_here = {local for local, real in aliases.items()
                        if any(m.endswith("." + real) or m == real for m in MODULES)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in modules_here):
                found.append(f"{name}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert found == []


def test_the_web_app_uses_the_public_api_only():
    """mmsearch/web imports from the library only what `mmsearch` exports (its __all__), and reaches
    into no index's catalog or vectors: what it needs is a method of Index."""
    import mmsearch

    public = set(mmsearch.__all__) | {"__version__"}
    found = []
    for name, path in MODULES.items():
        if not name.startswith("mmsearch.web"):
            continue
        for target, taken, line in _imports(name):
            if not target.startswith("mmsearch") or (_owner(target) or "").startswith("mmsearch.web"):
                continue
            exported_module = taken is None and target.removeprefix("mmsearch.") in public  # `from .. import private`
            if not exported_module and (target != "mmsearch" or taken not in public):
                found.append(f"{name}:{line} imports {target}" + (f".{taken}" if taken else ""))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("catalog", "vectors"):
                found.append(f"{name}:{node.lineno} uses .{node.attr}")
    assert found == []


def test_multi_uses_the_index_through_its_methods():
    """MultiIndex is built on Index's public methods: no private name of api, no catalog or vectors."""
    tree = ast.parse(MODULES["mmsearch.multi"].read_text())
    found = [f"line {node.lineno}: .{node.attr}" for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and (node.attr in ("catalog", "vectors") or (
                 _private(node.attr) and not (isinstance(node.value, ast.Name) and node.value.id == "self")))]
    assert found == []


def test_settings_is_the_one_reader_of_the_environment():
    """settings.py reads the environment, and cli_keyword.py reads MMSEARCH_HOME as it does without
    loading it (tests/test_cli_keyword.py holds the two to the same folder)."""
    found = []
    for name, path in MODULES.items():
        if name in ("mmsearch.settings", "mmsearch.cli_keyword"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                found.append(f"{name}:{node.lineno} reads os.{node.attr}")
    assert found == []
