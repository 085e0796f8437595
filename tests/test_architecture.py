"""The import contract of docs/architecture.md, checked on the source: layers, no cycles, no private names.

Every import statement of every module under src/camloc is read with ``ast`` (function-level imports
too; ``if TYPE_CHECKING:`` blocks are for type checkers only and are left out). The package root
``camloc/__init__.py`` and ``__main__`` sit above every layer.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import from its own layer's packages and from lower layers only.
LAYERS = [
    ["camloc.errors"],
    ["camloc.utils"],
    ["camloc.images", "camloc.runtime", "camloc.distributed", "camloc.box"],
    ["camloc.datasets"],
    ["camloc.models"],
    ["camloc.maps"],
    ["camloc.boxes"],
    ["camloc.metrics"],
    ["camloc.evaluation"],
    ["camloc.training"],
    ["camloc.reports", "camloc.viewer"],
    ["camloc.cli"],
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "camloc").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) of every runtime import of one module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                names = [a.name for a in child.names]
                if child.module is None:  # from . import x: x is a module of the package
                    for n in names:
                        found.append((f"{target}.{n}", [], child.lineno))
                else:
                    found.append((target, names, child.lineno))
            elif isinstance(child, ast.Import):
                found.extend((a.name, [], child.lineno) for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return [(t, n, line) for t, n, line in found if t == "camloc" or t.startswith("camloc.")]


def _layer(module: str) -> int | None:
    for i, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            return i
    return None


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m not in ("camloc", "camloc.__main__") and _layer(m) is None]
    assert missing == [], f"add these modules to a layer of docs/architecture.md and LAYERS: {missing}"


def test_imports_only_go_down_the_pipeline():
    upward = []
    for module, path in MODULES.items():
        mine = _layer(module)
        if mine is None:
            continue  # the package root and __main__ sit on top
        for target, _, line in _imports(module, path):
            theirs = _layer(target)
            if theirs is None or theirs > mine:
                upward.append(f"{path.relative_to(SRC)}:{line}: {module} imports {target}")
    assert upward == []


def test_no_module_imports_private_names_of_another():
    private = []
    for module, path in MODULES.items():
        for target, names, line in _imports(module, path):
            if target == module:
                continue
            hidden = [n for n in names if n.startswith("_") and not n.startswith("__")]
            hidden += [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
            if hidden:
                private.append(f"{path.relative_to(SRC)}:{line}: {module} takes {hidden} from {target}")
    assert private == []


def test_the_module_graph_has_no_cycles():
    graph = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, names, _ in _imports(module, path):
            # "from pkg import name" depends on pkg.name when that is a module, else on pkg itself
            hits = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            graph[module] |= set(hits) or ({target} if target in MODULES else set())
            graph[module].discard(module)
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m)
    assert cycles == []


def test_the_contract_sees_real_violations(tmp_path):
    """The checks above fail on code that breaks the contract (so they are not vacuous)."""
    bad = tmp_path / "camloc" / "maps" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "from ..evaluation.evaluate import evaluate\nfrom .cam import _secret\n"
        "def f():\n    from camloc.cli import main\n"
    )
    found = _imports("camloc.maps.bad", bad)
    assert [(t, n) for t, n, _ in found] == [
        ("camloc.evaluation.evaluate", ["evaluate"]),
        ("camloc.maps.cam", ["_secret"]),
        ("camloc.cli", ["main"]),
    ]
    assert _layer("camloc.evaluation.evaluate") > _layer("camloc.maps.bad")


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    "code",
    [
        "import camloc",
        "import camloc; camloc.__version__",
        "import sys; sys.argv = ['camloc', '--version']\nfrom camloc.cli import main\n"
        "try: main()\nexcept SystemExit: pass",
        "import sys; sys.argv = ['camloc', '--help']\nfrom camloc.cli import main\n"
        "try: main()\nexcept SystemExit: pass",
        "import camloc.datasets, camloc.maps.registry; camloc.datasets.FORMATS; camloc.maps.METHOD_NAMES",
    ],
)
def test_the_top_level_imports_no_torch(code):
    done = _fresh_python(code + "\nimport sys\nheavy = {'torch', 'cv2', 'numba', 'torchvision'} & set(sys.modules)"
                         "\nassert not heavy, heavy")  # fmt: skip
    assert done.returncode == 0, done.stderr


# camloc 0.1's __all__: every name keeps working.
NAMES_OF_0_1 = (
    "CAM BadImage Batch Box CamAdapter CamOutput EigenCAM GradCAM GradCAMPlusPlus HiResCAM LayerCAM ScoreCAM "
    "XGradCAM Geometry HeadNotFound ModelInfo Preprocess WeightsNotFound adapt best_iou box_iou build_model "
    "load_checkpoint load_batch load_model model_info normalize_maps open_image paper_box paper_boxes to_image_frame"
).split()


def test_public_names_resolve_and_the_package_is_typed():
    import importlib.metadata

    import camloc

    assert set(NAMES_OF_0_1) <= set(camloc.__all__)
    for name in camloc.__all__:
        assert getattr(camloc, name) is not None, name
    assert camloc.__version__ == importlib.metadata.version("camloc")
    assert (SRC / "camloc" / "py.typed").is_file()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        camloc.nope  # noqa: B018


def test_version_prints_without_a_model(capsys):
    from camloc.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    import camloc

    assert capsys.readouterr().out.strip() == f"camloc {camloc.__version__}"


def test_top_level_functions_stay_functions_once_their_modules_are_imported():
    code = (
        "import camloc.evaluation.explain, camloc.evaluation.evaluate, camloc, inspect\n"
        "assert inspect.isfunction(camloc.explain) and inspect.isfunction(camloc.evaluate)\n"
        "assert camloc.explain.__module__ == 'camloc.reports.grids'\n"
    )
    done = _fresh_python(code)
    assert done.returncode == 0, done.stderr


def test_a_name_stays_the_function_when_a_sibling_imported_its_namesake_module_first():
    code = (
        "import inspect, sys\nimport camloc.training.finegrained\n"  # finegrained does `from .train import train`
        "from camloc.training import train\nassert inspect.isfunction(train), train\n"
        "assert sys.modules['camloc.training.train'].train is train\n"
        "import camloc.evaluation.assess\n"  # assess does `from .evaluate import evaluate`
        "from camloc.evaluation import evaluate\nassert inspect.isfunction(evaluate), evaluate\n"
    )
    done = _fresh_python(code)
    assert done.returncode == 0, done.stderr


def test_a_name_stays_the_function_when_its_namesake_module_is_imported_first_through_the_package():
    code = (
        "import inspect\nfrom camloc.training import TrainConfig, train\n"  # TrainConfig imports camloc.training.train
        "assert inspect.isfunction(train), train\n"
        "from camloc.evaluation import ExplainResult, explain\nassert inspect.isfunction(explain), explain\n"
    )
    done = _fresh_python(code)
    assert done.returncode == 0, done.stderr


# Size limits (issue 21): a module is one job, a function fits on a screen or two. boxes/sweep.py holds the
# numba kernels of the threshold sweep, whose passes keep their state in locals for speed.
MODULE_LINES = 600
FUNCTION_LINES = 100
LONG_MODULES = {"camloc.boxes.sweep"}


def _is_numba_kernel(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("njit" in ast.unparse(d) for d in node.decorator_list)


def _long_functions(source: str) -> list[tuple[int, str, int]]:
    """(line, name, length) of each function over the limit, numba kernels aside."""
    long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_numba_kernel(node):
            lines = node.end_lineno - node.lineno + 1
            if lines > FUNCTION_LINES:
                long.append((node.lineno, node.name, lines))
    return long


def test_no_module_or_function_is_too_long():
    too_long = []
    for module, path in MODULES.items():
        source = path.read_text()
        if module not in LONG_MODULES and (n := len(source.splitlines())) > MODULE_LINES:
            too_long.append(f"{path.relative_to(SRC)} has {n} lines")
        too_long += [f"{path.relative_to(SRC)}:{at}: {name} has {n} lines" for at, name, n in _long_functions(source)]
    assert too_long == []


def test_the_size_limits_see_a_long_function_but_not_a_kernel():
    body = "\n".join(f"    x{i} = {i}" for i in range(FUNCTION_LINES))
    source = f"def f():\n{body}\n\n\n@nb.njit(cache=True)\ndef kernel():\n{body}\n\n\ndef g():\n    pass\n"
    assert _long_functions(source) == [(1, "f", FUNCTION_LINES + 1)]
