"""Which way the imports point (docs/architecture.md, "Rooms"): read from the source with `ast`, nothing imported.

``schema`` and ``config`` import nothing of ours, ``models`` only ``schema``, ``store`` nothing above it (``actors``,
``serve``, ``bench``), ``sim`` only the layers below it (``schema``, ``models``, ``store``, ``config``); nothing
imports ``sim`` but ``cli``, ``bench`` and the tests; ``gateway`` (the field gateways, run at the edge) imports only
``schema``, ``config`` and ``store``, and only ``cli``, ``bench`` and the tests import it; ``cli`` may import
everything and nothing imports it but ``bench`` and the tests. No router imports another: what two routers share
lives in a service (``serve/*.py``). Routers moved onto services open no transaction, write no audit row and
publish nothing themselves. Imports inside functions count too.
"""

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast  # no Ray, no Serve: `./wp test -m fast`

ROOT = Path(__file__).resolve().parent.parent
MAY_NOT_IMPORT = {
    "schema": {"config", "models", "store", "actors", "serve", "sim", "cli", "bench", "gateway"},
    "config": {"schema", "models", "store", "actors", "serve", "sim", "cli", "bench", "gateway"},
    "models": {"config", "store", "actors", "serve", "sim", "cli", "bench", "gateway"},
    "notify": {"config", "models", "store", "actors", "serve", "sim", "cli", "bench", "gateway"},
    "store": {"actors", "serve", "sim", "cli", "bench", "gateway"},
    "actors": {"serve", "sim", "cli", "bench", "gateway"},
    "serve": {"sim", "cli", "bench", "gateway"},
    "sim": {"actors", "serve", "cli", "bench", "gateway"},
    "gateway": {"models", "notify", "actors", "serve", "sim", "cli", "bench"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import in the file; ``from a import b`` yields ``a.b`` (``b`` may be a module)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], node.module or ""] if node.level else
                            [node.module or ""]).strip(".")
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_the_graph_is_read() -> None:
    found = {name for _, name in imported(ROOT / "serve" / "routers" / "sync.py")}
    assert "serve.sync" in found and "store.sync.CONFLICTS" in found
    assert module_name(ROOT / "serve" / "routers" / "__init__.py") == "serve.routers"
    assert "sim.run_simulation" in {name for _, name in imported(ROOT / "cli" / "up.py")}


@pytest.mark.parametrize("package", sorted(MAY_NOT_IMPORT))
def test_lower_packages_do_not_import_higher_ones(package: str) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in files(package)
             for line, name in imported(path) if name.split(".")[0] in MAY_NOT_IMPORT[package]]
    assert not wrong, "\n".join(wrong)


def test_no_router_imports_another() -> None:
    wrong = []
    for path in files("serve/routers"):
        own = module_name(path)
        for line, name in imported(path):
            parts = name.split(".")
            if parts[:2] == ["serve", "routers"] and len(parts) > 2 and ".".join(parts[:3]) != own:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


# Routers that only parse, call a service (serve/*.py, which works in a `serve.uow` unit of work) and answer.
THIN_ROUTERS = ("ack_links", "alerts", "api_keys", "audit_logs", "equipment", "field_events", "maintenance",
                "ml_models", "notification_policies", "predictions", "production", "readings", "rules", "silences",
                "sync", "telemetry", "users", "wells")


@pytest.mark.parametrize("name", THIN_ROUTERS)
def test_thin_routers_leave_the_work_to_their_service(name: str) -> None:
    path = ROOT / "serve" / "routers" / f"{name}.py"
    wrong = [f"line {line} imports {found}" for line, found in imported(path)  # a resource's listing spec may come
             if found in ("store.audit", "store.audit.record")  # from store/, its writes may not
             or found.startswith(("store.db", "serve.uow", "actors.", "nats."))]
    source = path.read_text()
    wrong += [f"calls {call}" for call in ("tenant_tx(", "notify_actors(", ".publish(", "fetch_page(")
              if call in source]
    assert not wrong, "\n".join(wrong)


# Functions over MAX_FUNCTION_LINES outside tests and benchmarks that are known debt, each to be split (issue 19).
# Empty now: a long function is split before it is merged. Name one here only with a reason and an issue.
LONG_FUNCTIONS_LEFT: set[str] = set()
MAX_FUNCTION_LINES = 80


def long_functions(source: str, name: str, limit: int = MAX_FUNCTION_LINES) -> set[str]:
    """``name:function`` for each function (nested ones too) of ``source`` longer than ``limit`` lines."""
    long: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            if node.end_lineno - node.lineno + 1 > limit:
                long.add(f"{name}:{node.name}")
    return long


def _function(name: str, lines: int, indent: str = "") -> str:
    return f"{indent}def {name}():\n" + "".join(f"{indent}    x{i} = {i}\n" for i in range(lines - 1))


def test_the_line_count_is_exact_and_sees_nested_functions() -> None:
    """With the list empty, this keeps the bar itself tested: MAX_FUNCTION_LINES lines pass, one more fails."""
    assert long_functions(_function("f", MAX_FUNCTION_LINES), "m.py") == set()
    assert long_functions(_function("f", MAX_FUNCTION_LINES + 1), "m.py") == {"m.py:f"}
    nested = "async def outer():\n" + _function("inner", MAX_FUNCTION_LINES + 1, "    ")
    assert long_functions(nested, "m.py") == {"m.py:outer", "m.py:inner"}


def test_no_function_is_over_80_lines_but_the_known_ones() -> None:
    long: set[str] = set()
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {".venv", "tests", "bench"} or any(p.startswith(".") for p in rel.parts):
            continue
        long |= long_functions(path.read_text(encoding="utf-8"), rel.as_posix())
    assert long == LONG_FUNCTIONS_LEFT, "split the new long functions; drop the split ones from the list"
