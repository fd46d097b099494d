"""The shape of the house: import layers, what ``cli/`` may not do, and size limits.

The package's data flows one way: validators and file plumbing at the bottom, then the
image operations (low rank, Fourier), then the methods and studies (attributions,
spectra, stability, runs), then scores and figures, then the demo and the command line.
A module may import only from its own layer or below; the one exception is the lazy
import of the figures that :meth:`RankSpectrum.plot` needs (the public contract puts a
``plot`` method on a result class).
"""

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "captum_rig"

# Layer of each top-level module or package of captum_rig (a dotted key names one module
# of a package when it sits lower than the rest of its package).
LAYERS: Dict[str, int] = {
    "_checks": 0,
    "_context": 0,
    "_captum": 0,
    "_tables": 1,
    "_checkpoint": 1,
    "_filter_axis": 2,
    "lowrank": 2,
    "fourier.filters": 2,
    "models": 2,
    "synthetic": 2,
    "data": 2,
    "loading": 3,
    "robustness": 3,
    "metrics": 3,
    "transforms": 3,
    "attr": 4,
    "spectrum": 4,
    "fourier": 4,
    "stability": 4,
    "runs": 4,
    "viz": 5,
    "quantus": 5,
    "demo": 6,
    "cli": 7,
    "__init__": 7,
    "__main__": 7,
}

# (importer, imported) pairs allowed to point up a layer, each inside a function only.
LAZY_EXCEPTIONS = {("spectrum", "viz")}

# What the command line leaves to the library: files, images, figures and gradients.
CLI_FORBIDDEN_MODULES = ("csv", "json", "pandas", "PIL", "matplotlib.pyplot", "h5py")
# a library table's own writer (RankSpectrum.to_csv, RobustnessReport.to_csv) is the
# library writing; cli/ must not write rows or draw itself
CLI_FORBIDDEN_CALLS = ("backward", "grad", "savefig", "writerow", "writerows")

MODULE_LINES = 500
FUNCTION_LINES = 60
TEST_FILE_LINES = 800


def _modules() -> List[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "assets" not in p.parts)


def _dotted(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _layer(dotted: str) -> Optional[int]:
    """The layer of a module of captum_rig given its dotted name below the package."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return LAYERS[key]
    return None


def _imports(path: Path) -> Iterator[Tuple[int, str, bool]]:
    """``(line, imported module below captum_rig, inside a function)`` of every import."""
    tree = ast.parse(path.read_text(), str(path))
    nested = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    package = _dotted(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        names: List[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(["captum_rig", *base] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        for name in names:
            if name == "captum_rig" or name.startswith("captum_rig."):
                yield node.lineno, name[len("captum_rig.") :], id(node) in nested


def _imported_layer(name: str) -> Optional[int]:
    # "from captum_rig import x" names x; "from captum_rig.viz import f" names viz.f,
    # whose layer is viz's.
    return _layer(name) if name else LAYERS["__init__"]


def test_every_module_has_a_layer():
    """Each module of the package is placed in a layer (a new one must be placed here)."""
    missing = [_dotted(p) for p in _modules() if _layer(_dotted(p)) is None]
    assert not missing, f"add these to LAYERS in {Path(__file__).name}: {missing}"


def test_imports_point_down_the_layers():
    """No module imports from a layer above its own, but for the lazy exceptions."""
    offenders = []
    for path in _modules():
        me = _dotted(path)
        mine = _layer(me)
        for line, name, lazy in _imports(path):
            theirs = _imported_layer(name)
            if theirs is None or mine is None or theirs <= mine:
                continue
            pair = (me.split(".")[0], name.split(".")[0])
            if lazy and pair in LAZY_EXCEPTIONS:
                continue
            offenders.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not offenders, "imports that run up the layers:\n" + "\n".join(offenders)


def test_the_lazy_exception_is_still_needed():
    """The one allowed upward import exists, inside a function (else drop the exception)."""
    found = [
        lazy
        for line, name, lazy in _imports(PACKAGE / "spectrum.py")
        if name.split(".")[0] == "viz"
    ]
    assert found and all(found), "spectrum imports viz only lazily, and does"


def _cli_files() -> List[Path]:
    cli = PACKAGE / "cli"
    return sorted(cli.rglob("*.py")) if cli.is_dir() else [PACKAGE / "cli.py"]


def test_cli_writes_no_files_and_draws_nothing_itself():
    """cli/ parses and calls the library: no csv/json/PIL/pyplot/h5py, no gradients."""
    offenders = []
    for path in _cli_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for name in names:
                if any(name == m or name.startswith(m + ".") for m in CLI_FORBIDDEN_MODULES):
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLI_FORBIDDEN_CALLS
            ):
                offenders.append(f"{path.name}:{node.lineno} calls .{node.func.attr}()")
    assert not offenders, "leave this to the library:\n" + "\n".join(offenders)


def _function_lengths(path: Path) -> Iterator[Tuple[str, int, int]]:
    """``(name, first line, body lines without the docstring)`` of every function."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            body = body[1:]
        if body:
            yield node.name, node.lineno, body[-1].end_lineno - body[0].lineno + 1


def _source_files() -> List[Path]:
    folders = ("captum_rig", "examples", "benchmarks", "scripts")
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py") if "assets" not in p.parts)


def test_no_module_over_the_line_limit():
    """No module of the package is over 500 lines: one idea per module."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MODULE_LINES
    }
    assert not long, f"modules over {MODULE_LINES} lines: {long}"


def test_no_function_over_the_line_limit():
    """No function body (its docstring aside) is over 60 lines, in code or scripts."""
    long = [
        f"{p.relative_to(ROOT)}:{line} {name} ({n} lines)"
        for p in _source_files()
        for name, line, n in _function_lengths(p)
        if n > FUNCTION_LINES
    ]
    assert not long, f"functions over {FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_no_test_file_over_the_line_limit():
    """No test file is over 800 lines: split it by what it tests."""
    long = {
        str(p.relative_to(ROOT)): n
        for p in sorted((ROOT / "tests").rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > TEST_FILE_LINES
    }
    assert not long, f"test files over {TEST_FILE_LINES} lines: {long}"


def _private_captum_imports(path: Path) -> List[Tuple[int, str]]:
    """``(line, module)`` of every import of captum._utils / captum.attr._utils in a file."""
    private = re.compile(r"^captum(\.attr)?\._utils(\.|$)")
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and private.match(node.module):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if private.match(a.name)]
    return found


def test_captum_private_api_is_imported_in_one_module():
    """Only captum_rig/_captum.py imports captum._utils or captum.attr._utils."""
    offenders = {
        str(p.relative_to(ROOT)): found
        for p in _modules()
        if p.name != "_captum.py" and (found := _private_captum_imports(p))
    }
    assert not offenders, f"import these through captum_rig._captum instead: {offenders}"
    assert _private_captum_imports(PACKAGE / "_captum.py"), "the one home must exist"


def test_import_finders_see_every_form(tmp_path):
    """The checks above catch from-imports, plain imports, relative and nested ones."""
    source = tmp_path / "mod.py"
    source.write_text(
        "import captum._utils.common\n"
        "from captum.attr._utils.attribution import GradientAttribution\n"
        "def f():\n    from captum._utils import typing\n"
        "from captum.attr import IntegratedGradients\n"
    )
    assert [line for line, _ in _private_captum_imports(source)] == [1, 2, 4]
    fake = PACKAGE / "spectrum.py"
    names = {(name.split(".")[0], lazy) for _, name, lazy in _imports(fake)}
    assert ("viz", True) in names


@pytest.mark.parametrize(
    "dotted, layer", [("attr.rig", 4), ("fourier.filters", 2), ("fourier.spectrum", 4)]
)
def test_layer_lookup_takes_the_longest_key(dotted, layer):
    """A package's modules inherit its layer unless named on their own."""
    assert _layer(dotted) == layer
