"""The package's folders show its one-way flow: files -> samples -> answers -> result -> checks -> report.

Every import statement counts: at module level, inside functions and under TYPE_CHECKING. A module may import
modules of its own stage or of earlier ones, never of a later stage, and the graph of modules has no circle.
Run it alone with `pytest tests/test_import_graph.py`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_emogate"
STAGES = (
    # files; YAML; how numbers are written; optional libraries; the answer contract; predictions files
    ("files", "safe_yaml", "formats", "extras", "answers", "predictions"),
    ("data", "model"),  # Test3 files -> samples; the model
    ("inference",),  # samples -> answers
    ("evaluate",),  # answers -> result -> outcomes -> verdict
    ("history",),  # results over time
    ("report",),  # pure rendering
    ("gate",),  # one session's gate
    ("outputs", "options", "cli"),  # the files a session writes; the options; the command line
    ("stash",),  # the session's state
    ("gate_tests", "configure", "html_hooks"),  # the gate's items; options -> gate; the gate in pytest-html
    ("plugin",),  # the hooks
)
"""Each stage's modules and folders, earliest first, by their first name under pytest_emogate."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports, anywhere in it (a `from X import name` of a submodule counts as
    importing that submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                      for alias in node.names}  # fmt: skip
    return {name for name in found if name in known}


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package's __init__: lazy re-exports of the public API
    return next(index for index, names in enumerate(STAGES) if parts[1] in names)


def test_every_module_has_a_stage() -> None:
    for module in modules():
        if module != "pytest_emogate":
            assert stage_of(module) is not None, f"{module} belongs to no stage of STAGES"


def test_no_module_imports_from_a_later_stage() -> None:
    known = set(modules())
    backwards = []
    for module, path in modules().items():
        own = stage_of(module)
        for imported in imports(path, known):
            theirs = stage_of(imported)
            if own is not None and theirs is not None and theirs > own:
                backwards.append(f"{module} (stage {own}) imports {imported} (stage {theirs})")
    assert backwards == []


def test_the_import_graph_has_no_circle() -> None:
    known = set(modules())
    graph = {module: imports(path, known) - {module} for module, path in modules().items()}
    circles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                circles.append([*trail[trail.index(imported) :], imported])
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_the_checker_sees_a_backward_import(tmp_path: Path) -> None:
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from pytest_emogate.plugin import add_options\n", encoding="utf-8")
    assert imports(source, {"pytest_emogate.plugin"}) == {"pytest_emogate.plugin"}
    assert stage_of("pytest_emogate.plugin") > stage_of("pytest_emogate.evaluate.metrics")  # type: ignore[operator]
