"""The import graph of src/ (issue 21's acceptance), read with ``ast``: no module is imported.

Every import statement of every module under src/*/vla_*/ counts, at module level and inside
functions alike (a lazy import is still a dependency). The rules:

(a) vla_common, the ground floor, imports no other vla_* package.
(b) vla_perception, vla_actuation and vla_sim import only vla_common (so never vla_policy).
(c) No import cycle: neither between modules nor between packages.
(d) Floors (FLOORS): a package imports only itself and packages on lower floors, so the
    package.xml dependencies form the DAG colcon needs.
(e) An import inside a function says why it is not at the top: a ``# lazy: <reason>`` comment on
    the import's own line, or in the comment lines directly above it. A comment above a block of
    consecutive imports explains the whole block. The reason is meant to be an optional or heavy
    dependency (torch, mujoco, rclpy in a pure module, ...); anything else belongs at the top.

An import names a module: ``import a.b.c`` and ``from a.b.c import x`` depend on ``a.b.c``, and
``from a.b import c`` on ``a.b.c`` when that is a module of src/. Parent packages are not counted
(their ``__init__`` runs first in any case, and an ``__init__`` that imports its own submodules
would otherwise read as a cycle).

Each checker returns a list of problems ("file:line: what"); the last tests feed them small broken
graphs to show that each can fail.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

FLOORS = {
    "vla_common": 0,
    "vla_perception": 1,
    "vla_actuation": 1,
    "vla_sim": 1,
    "vla_policy": 1,
    "vla_bringup": 2,
    "vla_data": 3,
    "vla_eval": 4,
    "vla_training": 5,
    "vla_stack": 6,
}
GROUND_FLOOR = "vla_common"
NODE_PACKAGES = ("vla_perception", "vla_actuation", "vla_sim")  # may import only the ground floor
LAZY_COMMENT = re.compile(r"#\s*lazy:\s*\S")


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. vla_eval.bench ("vla_policy.backends.octo" for its __init__.py)
    path: str  # for messages, relative to the repository
    source: str

    @property
    def package(self) -> str:
        return self.name.split(".")[0]

    @property
    def is_package(self) -> bool:
        return self.path.endswith("__init__.py")


@dataclass(frozen=True)
class Edge:
    importer: Module
    target: str  # the imported module (a src/ module, or the top-level name of a third-party one)
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.importer.path}:{self.line}"

    @property
    def target_package(self) -> str:
        return self.target.split(".")[0]


# --------------------------------------------------------------------------------------------------
# Reading


def read_src(src: Path = SRC) -> list[Module]:
    modules = []
    for path in sorted(src.glob("*/vla_*/**/*.py")):
        package_root = path.parents[len(path.relative_to(src).parts) - 2]
        parts = path.relative_to(package_root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules.append(Module(name, str(path.relative_to(src.parent)), path.read_text()))
    return modules


def _resolve(name: str, known: set[str]) -> str:
    """The longest prefix of ``name`` that is a src/ module; else the top-level (third-party) name."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return parts[0]


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.name.split(".")
    base = base if module.is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it sits inside a function."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, in_function))
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, inside)

    visit(tree, False)
    return found


def edges_of(modules: list[Module]) -> list[Edge]:
    known = {m.name for m in modules}
    edges = []
    for module in modules:
        for node, in_function in _imports(ast.parse(module.source, filename=module.path)):
            if isinstance(node, ast.Import):
                targets = [_resolve(alias.name, known) for alias in node.names]
            else:
                base = _absolute(module, node)
                if base == "__future__":
                    continue
                targets = [_resolve(f"{base}.{alias.name}", known) for alias in node.names]
            for target in dict.fromkeys(targets):
                if target != module.name:
                    edges.append(Edge(module, target, node.lineno, in_function))
    return edges


def _project(edges: list[Edge]) -> list[Edge]:
    return [e for e in edges if e.target_package in FLOORS or e.target_package.startswith("vla_")]


# --------------------------------------------------------------------------------------------------
# Checkers: each returns a list of problems


def ground_floor_problems(edges: list[Edge]) -> list[str]:
    """(a) vla_common imports no other vla_* package."""
    return [
        f"{e.where}: {e.importer.name} imports {e.target}; {GROUND_FLOOR} imports no other vla_* package"
        for e in _project(edges)
        if e.importer.package == GROUND_FLOOR and e.target_package != GROUND_FLOOR
    ]


def node_package_problems(edges: list[Edge]) -> list[str]:
    """(b) perception, actuation and sim import only vla_common (and themselves)."""
    return [
        f"{e.where}: {e.importer.name} imports {e.target}; {e.importer.package} may import only "
        f"{GROUND_FLOOR}"
        for e in _project(edges)
        if e.importer.package in NODE_PACKAGES and e.target_package not in (GROUND_FLOOR, e.importer.package)
    ]


def floor_problems(edges: list[Edge], floors: dict[str, int] = FLOORS) -> list[str]:
    """(d) a package imports only itself and lower floors; every vla_* package has a floor."""
    problems = []
    for e in _project(edges):
        mine, theirs = e.importer.package, e.target_package
        if mine == theirs:
            continue
        if mine not in floors or theirs not in floors:
            unplaced = mine if mine not in floors else theirs
            problems.append(f"{e.where}: package {unplaced} has no floor in FLOORS")
        elif floors[theirs] >= floors[mine]:
            problems.append(
                f"{e.where}: {e.importer.name} imports {e.target}; {mine} (floor {floors[mine]}) may "
                f"import only lower floors, {theirs} is on floor {floors[theirs]}"
            )
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def module_cycle_problems(edges: list[Edge]) -> list[str]:
    """(c) no cycle among src/ modules (in-function imports included)."""
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for e in _project(edges):
        graph.setdefault(e.importer.name, set()).add(e.target)
        where.setdefault((e.importer.name, e.target), e.where)
    problems = []
    for component in _cycles(graph):
        inside = set(component)
        links = [
            f"{a} -> {b} ({where[a, b]})" for a in component for b in sorted(graph.get(a, ())) if b in inside
        ]
        problems.append(f"import cycle among modules {component}: " + "; ".join(links))
    return problems


def package_cycle_problems(edges: list[Edge]) -> list[str]:
    """(c) no cycle among packages."""
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for e in _project(edges):
        if e.importer.package != e.target_package:
            graph.setdefault(e.importer.package, set()).add(e.target_package)
            where.setdefault((e.importer.package, e.target_package), e.where)
    problems = []
    for component in _cycles(graph):
        inside = set(component)
        links = [
            f"{a} -> {b} (e.g. {where[a, b]})" for a in component for b in sorted(graph[a]) if b in inside
        ]
        problems.append(f"import cycle among packages {component}: " + "; ".join(links))
    return problems


def lazy_import_problems(modules: list[Module]) -> list[str]:
    """(e) every import inside a function carries a '# lazy: <reason>' comment (see the docstring)."""
    problems = []
    for module in modules:
        lines = module.source.splitlines()
        lazy = [n for n, in_function in _imports(ast.parse(module.source)) if in_function]
        starts = {line: n.lineno for n in lazy for line in range(n.lineno, n.end_lineno + 1)}
        for node in lazy:
            own = lines[node.lineno - 1 : node.end_lineno]
            if any(LAZY_COMMENT.search(line) for line in own) or _explained_above(lines, starts, node.lineno):
                continue
            what = ast.unparse(node)
            problems.append(
                f"{module.path}:{node.lineno}: '{what}' inside a function without a '# lazy:' why"
            )
    return problems


def _explained_above(lines: list[str], import_starts: dict[int, int], line: int) -> bool:
    """Whether the comment lines above ``line`` (skipping the lazy imports of its block) say lazy."""
    above = line - 1
    while above in import_starts:  # 1-based line numbers of the imports directly above
        above = import_starts[above] - 1
    while above >= 1 and lines[above - 1].strip().startswith("#"):
        if LAZY_COMMENT.search(lines[above - 1]):
            return True
        above -= 1
    return False


# --------------------------------------------------------------------------------------------------
# The repository


def _report(problems: list[str]) -> str:
    return f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_src_is_read_without_importing_it():
    modules = read_src()
    names = {m.name for m in modules}
    assert {"vla_common.robot", "vla_eval.bench", "vla_stack.cli", "vla_policy.backends.octo"} <= names
    assert {m.package for m in modules} == set(FLOORS), "every package has a floor, every floor a package"


def test_the_ground_floor_imports_no_other_vla_package():
    problems = ground_floor_problems(edges_of(read_src()))
    assert not problems, _report(problems)


def test_perception_actuation_and_sim_import_only_the_ground_floor():
    problems = node_package_problems(edges_of(read_src()))
    assert not problems, _report(problems)


def test_no_import_cycle_between_modules():
    problems = module_cycle_problems(edges_of(read_src()))
    assert not problems, _report(problems)


def test_no_import_cycle_between_packages():
    problems = package_cycle_problems(edges_of(read_src()))
    assert not problems, _report(problems)


def test_packages_import_only_lower_floors():
    problems = floor_problems(edges_of(read_src()))
    assert not problems, _report(problems)


def test_every_import_inside_a_function_says_why():
    problems = lazy_import_problems(read_src())
    assert not problems, _report(problems)


# --------------------------------------------------------------------------------------------------
# The checkers can fail


def _modules(sources: dict[str, str]) -> list[Module]:
    return [Module(name, f"src/{name.replace('.', '/')}.py", text) for name, text in sources.items()]


def test_a_ground_floor_import_of_the_policy_package_is_caught():
    edges = edges_of(
        _modules(
            {
                "vla_common.qos": "from vla_policy.contract import Observation\n",
                "vla_policy.contract": "import numpy\n",
                "vla_sim.world": "def f():\n    from vla_policy import contract  # lazy: heavy\n",
            }
        )
    )
    assert ground_floor_problems(edges) == [
        "src/vla_common/qos.py:1: vla_common.qos imports vla_policy.contract; vla_common imports no other "
        "vla_* package"
    ]
    assert node_package_problems(edges) == [
        "src/vla_sim/world.py:2: vla_sim.world imports vla_policy.contract; "
        "vla_sim may import only vla_common"
    ]
    assert len(floor_problems(edges)) == 2  # floor 0 -> 1, and floor 1 -> 1


def test_a_module_cycle_through_a_lazy_import_and_a_package_cycle_are_caught():
    edges = edges_of(
        _modules(
            {
                "vla_eval.bench": "from vla_eval import bench_policy\n",
                "vla_eval.bench_policy": "def run():\n    from vla_eval.bench import stats  # lazy: x\n",
                "vla_data.replay": "import vla_eval.bench\n",
                "vla_eval.demo": "from vla_data.replay import run_replay\n",
            }
        )
    )
    [modules] = module_cycle_problems(edges)
    assert modules.startswith("import cycle among modules ['vla_eval.bench', 'vla_eval.bench_policy']")
    assert "vla_eval.bench_policy -> vla_eval.bench (src/vla_eval/bench_policy.py:2)" in modules
    [packages] = package_cycle_problems(edges)
    assert packages.startswith("import cycle among packages ['vla_data', 'vla_eval']")
    assert floor_problems(edges) == [
        "src/vla_data/replay.py:1: vla_data.replay imports vla_eval.bench; vla_data (floor 3) may import "
        "only lower floors, vla_eval is on floor 4"
    ]


def test_relative_imports_and_from_package_import_submodule_resolve_to_the_module():
    modules = _modules(
        {
            "vla_sim.tasks": "",
            "vla_sim.world": "from . import tasks\nfrom .tasks import X\nfrom vla_sim import tasks as t\n",
        }
    )
    assert {(e.target, e.line) for e in edges_of(modules)} == {("vla_sim.tasks", n) for n in (1, 2, 3)}


def test_an_unexplained_lazy_import_is_caught_and_a_comment_explains_its_block():
    source = (
        "import json\n"  # 1: top level, fine
        "def a():\n"
        "    import torch\n"  # 3: no reason
        "def b():\n"
        "    # lazy: mujoco is optional, and this comment\n"
        "    # runs over two lines\n"
        "    import mujoco\n"  # 7: explained by the block comment
        "    from vla_sim import (\n"
        "        world,\n"
        "    )\n"  # 8: same block
        "    x = 1\n"
        "    import cv2\n"  # 12: the comment above does not reach past code
        "def c():\n"
        "    import rclpy  # lazy: rclpy only when the command runs\n"
        "    import yaml\n"  # 15: a trailing comment explains only its own line
        "    # lazy:\n"
        "    import numpy\n"  # 17: a reason is required
    )
    problems = lazy_import_problems(_modules({"vla_data.cli": source}))
    assert [p.split(":")[1] for p in problems] == ["3", "12", "15", "17"]
    assert problems[0] == "src/vla_data/cli.py:3: 'import torch' inside a function without a '# lazy:' why"
