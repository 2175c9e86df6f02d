"""The package layers: imports run one way only, rl_strategy < training < backtests < reports < rltrader.

Every import is checked, including those inside functions (the CLI and the lazy research API
import inside function bodies), so a layer cannot reach up by hiding an import in a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("rl_strategy", "training", "backtests", "reports", "rltrader")


def imported_modules(path: Path) -> list[str]:
    """Absolute module names imported anywhere in a file (function bodies included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use absolute imports across the layers)"
            names.append(node.module or "")
    for node in ast.walk(tree):  # import_module("pkg.mod") with a literal name
        if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "import_module"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.append(node.args[0].value)
    return names


def package_edges() -> dict[str, set[tuple[str, str]]]:
    """package -> {(imported package, 'file imports module')}."""
    edges: dict[str, set[tuple[str, str]]] = {p: set() for p in ORDER}
    for pkg in ORDER:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for module in imported_modules(path):
                top = module.split(".")[0]
                if top in ORDER and top != pkg:
                    edges[pkg].add((top, f"{path.relative_to(ROOT)} imports {module}"))
    return edges


def test_every_layer_exists():
    for pkg in ORDER:
        assert (ROOT / pkg / "__init__.py").is_file(), pkg


def test_imports_only_point_down():
    upward = [why for pkg, targets in package_edges().items() for top, why in targets
              if ORDER.index(top) > ORDER.index(pkg)]
    assert not upward, "imports that run up the layers:\n" + "\n".join(sorted(upward))


def test_no_cycle_between_packages():
    graph = {pkg: {top for top, _ in targets} for pkg, targets in package_edges().items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*path, node, nxt])
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for pkg in ORDER:
        if pkg not in state:
            visit(pkg, [])


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from backtests.evaluate import run_backtest\n    import training.ppo\n")
    assert imported_modules(f) == ["backtests.evaluate", "training.ppo"]
