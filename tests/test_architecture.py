"""The layering of docs/architecture.md, checked on the imports themselves.

Every `import` and `from ... import` in the library's modules (also the ones
inside functions) is resolved to a project module and checked against the
forbidden arrows:

  reactor        -> netstack, drivers, frames    (the reactor knows no network)
  frames         -> anything of the project      (the frame contract stands alone)
  drivers        -> netstack, reactor            (devices know frames, not protocols)
  protocol core  -> reactor, drivers, netstack.sockets, netstack.sharding, netstack.testing
  netstack.wire  -> the rest of netstack         (headers know only headers)
  netstack.sharding -> reactor, netstack.sockets

The protocol core is netstack minus sockets/ (the glue), sharding (devices of
the shards), testing/ (what tests import) and replay (testing's replay engine as
a command).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("reactor", "netstack", "drivers", "frames")
GLUE = ("netstack.sockets", "netstack.sharding", "netstack.testing", "netstack.replay")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path):
    """(line, imported module) for every import of a project module in the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield node.lineno, mod
            for a in node.names:        # `from . import x` may name a submodule
                yield node.lineno, f"{mod}.{a.name}"


def _within(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def _layer(mod: str) -> str:
    if _within(mod, "netstack.wire"):
        return "wire"
    if any(_within(mod, g) for g in GLUE):
        return next(g for g in GLUE if _within(mod, g))
    if _within(mod, "netstack"):
        return "core"
    return mod.split(".")[0]


FORBIDDEN = {
    "reactor": ("netstack", "drivers", "frames"),
    "frames": ("reactor", "netstack", "drivers"),
    "drivers": ("netstack", "reactor"),
    "core": ("reactor", "drivers", "netstack.sockets", "netstack.sharding", "netstack.testing"),
    "wire": ("reactor", "drivers", "netstack"),
    "netstack.sharding": ("reactor", "netstack.sockets"),
}


def _violations() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            src = _module_name(path)
            layer = _layer(src)
            for line, mod in _imports(path):
                if mod.split(".")[0] not in PACKAGES:
                    continue
                if layer == "wire" and _within(mod, "netstack.wire"):
                    continue
                for target in FORBIDDEN.get(layer, ()):
                    if _within(mod, target):
                        out.append(f"{path.relative_to(ROOT)}:{line}: {layer} imports {mod}")
    return out


def test_no_forbidden_import():
    assert _violations() == []


@pytest.mark.parametrize("source, imported, layer_of_source", [
    ("reactor/x.py", "netstack.sockets", "reactor"),
    ("drivers/x.py", "netstack.rss", "drivers"),
    ("netstack/x.py", "reactor", "core"),
    ("netstack/wire/x.py", "netstack.tcp", "wire"),
])
def test_the_checker_sees_a_forbidden_arrow(source, imported, layer_of_source, tmp_path, monkeypatch):
    """The checker itself: a module that imports across a forbidden arrow is reported."""
    f = tmp_path / source
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(f"def g():\n    import {imported}\n")
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert _layer(_module_name(f)) == layer_of_source
    assert [v.split(": ", 1)[1] for v in _violations()] == [f"{layer_of_source} imports {imported}"]


def test_relative_imports_resolve():
    p = ROOT / "netstack" / "tcp" / "connection.py"
    mods = {m for _, m in _imports(p)}
    assert "netstack.wire.seq" in mods and "netstack.tcp.congestion" in mods


def test_no_file_over_800_lines_and_no_function_over_80():
    """The size rules of the reshaping (issue 10) in reactor/, netstack/, drivers/, frames/."""
    big = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            src = path.read_text()
            if src.count("\n") > 800:
                big.append(f"{path.relative_to(ROOT)}: {src.count(chr(10))} lines")
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > 80:
                        big.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} is {n} lines")
    assert big == []
