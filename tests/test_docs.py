"""The documentation runs: every page's code, the README quickstart, doctests, the site.

Every ```python block of every ``docs/*.md`` page (and of ``README.md``) is executed, the
blocks of one page in order in one fresh namespace, in a temporary working directory,
with matplotlib's Agg backend. A block that must not run is fenced ```text instead, or
preceded by a ``<!-- no-run -->`` line. A block fenced ```{.text .output} (or
```{.markdown .output}, shown rendered) right after a Python block is what that block
prints, compared with doctest's rules (``...`` stands for any text) in the same run.
Figures a page embeds from ``docs/img/`` must be written by that page's own code, so that
code and picture cannot drift apart; run

    python tests/test_docs.py --write-figures

to regenerate them (it runs the pages and copies the figures they write into docs/img/).

Also here: the CLI reference's commands parse, ``--help`` works for every subcommand,
the docstring ``Examples:`` of every module pass as doctests, every public name is in the
API reference, and ``mkdocs build --strict`` succeeds.
"""

import argparse
import doctest
import importlib
import importlib.util
import os
import pkgutil
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import captum_rig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
IMG = DOCS / "img"
NO_RUN = "<!-- no-run -->"
RUNNABLE = {"python", "py", "python3"}
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
# Pages whose figures under docs/img/ this file regenerates (others own the rest).
FIGURE_PAGES = (
    "tutorial_rig.md",
    "getting_started.md",
    "pixel_space.md",
    "captum_tools.md",
    "rank_contributions.md",
    "stability.md",
    "fourier.md",
)

_FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
_IMAGE_LINK = re.compile(r"!\[[^\]]*\]\((?P<path>img/[^)\s]+)\)")


# --------------------------------------------------------------------------------------
# Reading code blocks out of Markdown
# --------------------------------------------------------------------------------------


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    run: bool  # False when preceded by a <!-- no-run --> line


def code_blocks(text: str) -> List[Block]:
    """Every fenced block of ``text``, in order, with its language and no-run flag."""
    lines = text.splitlines()
    blocks: List[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        lang = info.split()[0].strip("{}.").lower() if info else ""
        start = i
        body: List[str] = []
        i += 1
        while i < len(lines):
            close = lines[i].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            body.append(lines[i])
            i += 1
        # unindent as much as the opening fence was indented
        indent = len(m.group("indent"))
        body = [b[indent:] if b[:indent].strip() == "" else b for b in body]
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        blocks.append(Block(lang, "\n".join(body) + "\n", start + 1, previous != NO_RUN))
        i += 1
    return blocks


def python_blocks(path: Path) -> List[Block]:
    """The runnable Python blocks of one page."""
    return [b for b in code_blocks(path.read_text()) if b.lang in RUNNABLE and b.run]


def run_page(path: Path, workdir: Path) -> Dict[int, str]:
    """Executes the page's Python blocks in order in one namespace, in ``workdir``.

    Returns what each block printed, keyed by the line of its opening fence, so that the
    page's output blocks can be checked against the same run.
    """
    import contextlib
    import io

    namespace: Dict[str, object] = {"__name__": f"docs_{path.stem}"}
    outputs: Dict[int, str] = {}
    old_cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for block in python_blocks(path):
            where = f"{path.relative_to(ROOT)}:{block.line}"
            buffer = io.StringIO()
            try:
                with contextlib.redirect_stdout(buffer):
                    exec(compile(block.code, where, "exec"), namespace)
            except Exception as e:
                raise AssertionError(
                    f"the code block at {where} failed: {type(e).__name__}: {e}\n{block.code}"
                ) from e
            outputs[block.line] = buffer.getvalue()
    finally:
        os.chdir(old_cwd)
        plt.close("all")
    return outputs


def embedded_figures(path: Path) -> List[str]:
    """File names under docs/img/ that ``path`` shows as images."""
    return [Path(m.group("path")).name for m in _IMAGE_LINK.finditer(path.read_text())]


# --------------------------------------------------------------------------------------
# The pages run
# --------------------------------------------------------------------------------------


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_page_id)
def test_page_code_runs(page: Path, tmp_path: Path):
    """Every Python block runs, in order, in one namespace; output blocks show what it prints."""
    outputs = run_page(page, tmp_path)
    for line, expected in output_blocks(page):
        got = outputs[line]
        assert output_matches(expected, got), (
            f"the block at {_page_id(page)}:{line} prints\n{got}\nbut the page shows\n{expected}"
        )
    # The figures the page embeds from docs/img/ and owns are written by its own code.
    if page.name in FIGURE_PAGES:
        for name in embedded_figures(page):
            assert (tmp_path / name).is_file(), (
                f"{_page_id(page)} shows img/{name} but its code does not write {name}"
            )


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=_page_id)
def test_embedded_figures_exist(page: Path):
    """Every image a page shows from docs/img/ is there."""
    missing = [n for n in embedded_figures(page) if not (IMG / n).is_file()]
    assert not missing, f"{_page_id(page)} shows missing figures {missing}"


def test_code_blocks_parser():
    """Fences, languages, indented fences and the no-run marker are read as intended."""
    text = (
        "intro\n```python\na = 1\n```\n\n<!-- no-run -->\n\n```python\nb = 2\n```\n"
        "````text\n```python\nnot a block\n```\n````\n  ```py\n  c = 3\n  ```\n~~~bash\nls\n~~~\n"
    )
    blocks = code_blocks(text)
    assert [(b.lang, b.code, b.run) for b in blocks] == [
        ("python", "a = 1\n", True),
        ("python", "b = 2\n", False),
        ("text", "```python\nnot a block\n```\n", True),
        ("py", "c = 3\n", True),
        ("bash", "ls\n", True),
    ], blocks


def test_docs_use_no_run_sparingly():
    """At most a few blocks are excluded with <!-- no-run -->: docs are meant to run."""
    skipped = {_page_id(p): sum(1 for b in code_blocks(p.read_text()) if not b.run) for p in PAGES}
    assert sum(skipped.values()) <= 6, f"too many <!-- no-run --> blocks: {skipped}"


# --------------------------------------------------------------------------------------
# The CLI reference
# --------------------------------------------------------------------------------------


def _cli_commands(path: Path) -> List[str]:
    """``captum-rig ...`` command lines of the shell blocks of ``path``."""
    commands = []
    for block in code_blocks(path.read_text()):
        if block.lang not in {"bash", "console", "sh", "shell", "text", ""}:
            continue
        joined = block.code.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if line.startswith("captum-rig "):
                commands.append(line.split(" #")[0].strip())
    return commands


def _subcommands() -> List[str]:
    from captum_rig.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_cli_help_for_every_subcommand(capsys: pytest.CaptureFixture):
    """``captum-rig --help`` and ``captum-rig COMMAND --help`` print usage and exit 0."""
    from captum_rig.cli import build_parser

    for args in [[]] + [[c] for c in _subcommands()]:
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args([*args, "--help"])
        out = capsys.readouterr().out
        assert exit_.value.code == 0, f"captum-rig {' '.join(args)} --help exited {exit_.value}"
        assert "usage:" in out, f"captum-rig {' '.join(args)} --help printed no usage"


def test_cli_module_entry_point():
    """``python -m captum_rig.cli --help`` works (the form the CLI reference mentions)."""
    proc = subprocess.run(
        [sys.executable, "-m", "captum_rig.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and "usage:" in proc.stdout, proc.stderr


def test_cli_reference_commands_parse():
    """Every ``captum-rig`` command shown in the docs parses with the real parser."""
    from captum_rig.cli import build_parser

    commands = [(p, c) for p in PAGES for c in _cli_commands(p)]
    cli_page = DOCS / "cli.md"
    if not cli_page.exists():
        pytest.skip("docs/cli.md (the CLI reference) is not written yet")
    assert _cli_commands(cli_page), "docs/cli.md shows no captum-rig command"
    subcommands = set(_subcommands())
    assert {shlex.split(c)[1] for c in _cli_commands(cli_page)} >= subcommands, (
        f"docs/cli.md should show every subcommand {sorted(subcommands)}"
    )
    for page, command in commands:
        argv = shlex.split(command)[1:]
        if "--help" in argv or "-h" in argv:
            continue
        try:
            build_parser().parse_args(argv)
        except (SystemExit, ValueError) as e:
            raise AssertionError(f"{_page_id(page)}: {command!r} does not parse: {e}") from e


# Commands of the CLI reference too slow for the test suite (tested in test_demo/test_cli).
SLOW_COMMANDS = ("captum-rig demo",)


_HEREDOC = re.compile(r"^python3? - <<'?(?P<tag>\w+)'?\n(?P<body>.*?)\n(?P=tag)$", re.S | re.M)


def _shell_steps(script: str) -> List[tuple]:
    """Splits a shell block into ("python", code) heredocs and ("cli", argv) commands.

    Anything else comes back as ("bash", text), to be run by bash.
    """
    steps: List[tuple] = []
    rest = script
    while rest.strip():
        m = _HEREDOC.search(rest)
        head = rest[: m.start()] if m else rest
        for line in head.replace("\\\n", " ").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("captum-rig "):
                steps.append(("cli", shlex.split(line.split(" #")[0])[1:]))
            else:
                steps.append(("bash", line))
        if not m:
            break
        steps.append(("python", m.group("body") + "\n"))
        rest = rest[m.end() :]
    return steps


def test_shell_steps_parser():
    """Heredocs, continued lines, comments and other lines are told apart."""
    script = (
        "python - <<'EOF'\nprint(1)\nEOF\ncaptum-rig lowrank a.png \\\n    --rank 2 --out b.png\n"
        "# a comment\nls -l\n"
    )
    assert _shell_steps(script) == [
        ("python", "print(1)\n"),
        ("cli", ["lowrank", "a.png", "--rank", "2", "--out", "b.png"]),
        ("bash", "ls -l"),
    ]


@pytest.mark.slow
def test_cli_reference_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The shell blocks of docs/cli.md run as written, in order, in an empty folder.

    Python heredocs run in this interpreter and ``captum-rig ARGS`` as
    ``captum_rig.cli.main(ARGS)`` (same code, no start-up cost per command); any other
    line runs in bash. ``captum-rig demo`` is left out: the demo has its own tests.
    """
    from captum_rig.cli import main

    cli_page = DOCS / "cli.md"
    if not cli_page.exists():
        pytest.skip("docs/cli.md (the CLI reference) is not written yet")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for block in code_blocks(cli_page.read_text()):
        if block.lang not in {"bash", "sh", "shell"} or not block.run:
            continue
        for kind, step in _shell_steps(block.code):
            where = f"docs/cli.md:{block.line}"
            if kind == "python":
                exec(compile(step, where, "exec"), {"__name__": "__main__"})
            elif kind == "cli":
                if step[:1] in (["demo"],):
                    continue
                code = main(step)
                assert code == 0, f"{where}: captum-rig {shlex.join(step)} exited {code}"
            else:
                proc = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", step], capture_output=True, text=True
                )
                assert proc.returncode == 0, f"{where}: {step!r} failed: {proc.stderr}"
            ran += 1
        plt.close("all")
    assert ran, "docs/cli.md has no shell block to run"


# --------------------------------------------------------------------------------------
# Doctests and the API reference
# --------------------------------------------------------------------------------------


def _modules() -> List[str]:
    names = ["captum_rig"]
    for info in pkgutil.walk_packages(captum_rig.__path__, "captum_rig."):
        names.append(info.name)
    return sorted(names)


MODULES = _modules()


def _doctests(name: str) -> List[doctest.DocTest]:
    module = importlib.import_module(name)
    globs = dict(vars(module))
    globs.update(torch=torch, nn=torch.nn)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, name, globs=globs) if t.examples]


@pytest.mark.parametrize("name", [m for m in MODULES if _doctests(m)])
def test_doctests(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ``Examples:`` of every docstring of the module run as doctests."""
    tests = _doctests(name)
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    failures: List[str] = []
    for test in tests:
        out: List[str] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = runner.run(test, out=out.append)
        if result.failed:
            failures.append("".join(out))
    plt.close("all")
    assert not failures, f"doctests of {name} failed:\n" + "\n".join(failures)


def _api_targets() -> List[str]:
    targets = []
    for page in DOCS.glob("*.md"):
        targets += re.findall(r"^:::\s*([\w.]+)", page.read_text(), flags=re.M)
    return targets


# Modules whose public names (``__all__``) the API reference must show.
API_MODULES = (
    "captum_rig",
    "captum_rig.lowrank",
    "captum_rig.attr.rig",
    "captum_rig.attr.rank_path",
    "captum_rig.attr.blur_ig",
    "captum_rig.attr.blur_path",
    "captum_rig.attr.layer_rig",
    "captum_rig.attr.rank_contributions",
    "captum_rig.transforms",
    "captum_rig.spectrum",
    "captum_rig.fourier",
    "captum_rig.robustness",
    "captum_rig.stability",
    "captum_rig.viz",
    "captum_rig.viz.fourier",
    "captum_rig.models",
    "captum_rig.data",
    "captum_rig.loading",
    "captum_rig.metrics",
    "captum_rig.quantus",
    "captum_rig.synthetic",
    "captum_rig.demo",
    "captum_rig.attr.registry",
    "captum_rig.runs",
    "captum_rig.viz.scores",
)


@pytest.mark.parametrize("module_name", API_MODULES)
def test_api_reference_shows_every_public_name(module_name: str):
    """Each name in the module's ``__all__`` has a ``:::`` entry (its own or its origin's)."""
    module = importlib.import_module(module_name)
    targets = set(_api_targets())
    missing, undefined = [], []
    for name in getattr(module, "__all__", []):
        if not hasattr(module, name):
            undefined.append(name)
            continue
        obj = getattr(module, name)
        candidates = {f"{module_name}.{name}"}
        origin = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if isinstance(origin, str) and isinstance(qualname, str):
            candidates.add(f"{origin}.{qualname}")
        # constants re-exported from another module (data re-exports models' stats)
        for other in API_MODULES:
            if other != module_name and getattr(importlib.import_module(other), name, None) is obj:
                candidates.add(f"{other}.{name}")
        if not candidates & targets:
            missing.append(name)
    assert not undefined, f"{module_name}.__all__ names undefined {undefined}"
    assert not missing, (
        f"the API reference (docs/api*.md) lacks {module_name}.{missing}; add a ':::' entry"
    )


def _mkdocs_available() -> Optional[str]:
    for module in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None:
            return module
        try:
            importlib.import_module(module)
        except ImportError:
            return module
    return None


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path):
    """``mkdocs build --strict`` (warnings are errors) builds the site."""
    missing = _mkdocs_available()
    if missing is not None:
        pytest.skip(f"{missing} is not installed (pip install -e '.[test]')")
    for page in ("cli.md", "miniature_study.md"):
        if not (DOCS / page).exists():
            pytest.skip(f"docs/{page} (linked from the nav) is not written yet")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    warnings_ = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert proc.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(
        warnings_ or proc.stderr.splitlines()[-20:]
    )
    assert (tmp_path / "site" / "index.html").is_file()
    # The rendered text holds no untypeset maths (KaTeX's own elements aside), e.g. a
    # docstring's Σ_{k=1}^{w} left as source: scripts/screenshot_docs.py's check.
    check = _load_script(ROOT / "scripts" / "screenshot_docs.py")
    site = tmp_path / "site"
    problems = {
        page or "index": check.dom_problems((site / page / "index.html").read_text(), built=True)
        for page in check.site_pages(site)
    }
    problems = {page: p for page, p in problems.items() if p}
    assert not problems, f"untypeset maths on the site: {problems}"


# --------------------------------------------------------------------------------------
# Regenerating the figures
# --------------------------------------------------------------------------------------


def write_figures(pages: List[str]) -> None:
    """Runs each page and copies the figures it embeds from its working dir to docs/img/."""
    IMG.mkdir(exist_ok=True)
    for name in pages:
        page = DOCS / name
        figures = embedded_figures(page)
        if not figures:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(0)
            run_page(page, Path(tmp))
            for fig in figures:
                shutil.copyfile(Path(tmp) / fig, IMG / fig)
                print(f"wrote docs/img/{fig}")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--write-figures", action="store_true", help="regenerate docs/img/")
    cli.add_argument("pages", nargs="*", default=list(FIGURE_PAGES))
    args = cli.parse_args()
    if not args.write_figures:
        cli.error("nothing to do: pass --write-figures")
    write_figures(args.pages)


# --------------------------------------------------------------------------------------
# Printed output shown on the pages, and the site's maths
# --------------------------------------------------------------------------------------

# A block fenced ```{.text .output} shows what the runnable Python block above it prints.
OUTPUT_CLASS = ".output"


def output_blocks(path: Path) -> List[tuple]:
    """``(fence line of the Python block, expected text)`` for every output block."""
    text = path.read_text()
    lines = text.splitlines()
    pairs, last = [], None
    for block in code_blocks(text):
        if block.lang in RUNNABLE and block.run:
            last = block
        elif OUTPUT_CLASS in lines[block.line - 1]:
            assert last is not None, f"{path.name}:{block.line}: output block before any code"
            pairs.append((last.line, block.code))
    return pairs


# Printed numbers differ in their last digits between torch builds and under load (the
# order of float reductions): they are compared with a tolerance, never as text.
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
OUTPUT_RTOL = 1e-3  # relative
OUTPUT_ULPS = 2  # absolute: units in the last decimal place the page prints


def _output_pattern(expected: str) -> "re.Pattern[str]":
    """A regex for ``expected``: numbers captured, ``...`` any text, any run of blanks."""
    parts, pos = [], 0
    for m in re.finditer(rf"{_NUMBER.pattern}|\.\.\.|\s+", expected):
        parts.append(re.escape(expected[pos : m.start()]))
        token = m.group()
        if token == "...":
            parts.append(r"[\s\S]*?")
        elif token.isspace():
            parts.append(r"\s+")
        else:
            parts.append(f"({_NUMBER.pattern})")
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile(r"\s*" + "".join(parts) + r"\s*")


def _close(expected: str, got: str) -> bool:
    if re.fullmatch(r"[-+]?\d+", expected):  # counts, ranks, sizes: exact
        return expected.lstrip("+") == got.lstrip("+")
    want, have = float(expected), float(got)
    decimals = len(expected.split(".")[1].split("e")[0].split("E")[0]) if "." in expected else 0
    exponent = int(re.split("[eE]", expected)[1]) if re.search("[eE]", expected) else 0
    ulp = 10.0 ** (exponent - decimals)
    return abs(want - have) <= OUTPUT_RTOL * max(abs(want), abs(have)) + OUTPUT_ULPS * ulp


def output_matches(expected: str, got: str) -> bool:
    """Whether ``got`` is what the page shows: the same text (``...`` matching anything,
    blanks folded) with every number within ``OUTPUT_RTOL`` and ``OUTPUT_ULPS``."""
    m = _output_pattern(expected.strip()).fullmatch(got)
    if m is None:
        return False
    wanted = [t for t in re.findall(rf"{_NUMBER.pattern}|\.\.\.", expected) if t != "..."]
    return all(_close(w, g) for w, g in zip(wanted, m.groups()))


@pytest.mark.parametrize(
    "expected, got, same",
    [
        ("delta tensor([-0.1711,  0.1267])", "delta tensor([-0.1711,  0.1268])", True),
        ("Eq. (3): -39.6218", "Eq. (3): -39.6255", True),
        ("share 0.0", "share 0.01", True),
        ("share 0.50", "share 0.53", False),
        ("sum 2.2936", "sum 2.3036", False),
        ("acc 0.91 ... done", "acc 0.91 of 4 images done", True),
        ("acc 0.91 ... done", "acc 0.91 of 4 images", False),
        ("1.5e-03 s", "1.502e-03 s", True),
        ("10 images", "11 images", False),
        ("natural\n  0.5", "natural 0.5", True),
        ("rank 4", "rank 4 extra", False),
    ],
)
def test_output_matches_with_a_tolerance(expected: str, got: str, same: bool):
    """Numbers match within a tolerance; text, counts and ellipses as doctest reads them."""
    assert output_matches(expected, got) is same


def test_output_blocks_parser(tmp_path: Path):
    """An output block belongs to the nearest runnable Python block above it."""
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint(1)\n```\n\n```{.text .output}\n1\n```\n\n```text\nplain\n```\n"
        "<!-- no-run -->\n```python\nprint(2)\n```\n```{.text .output}\n3\n```\n"
    )
    assert output_blocks(page) == [(1, "1\n"), (1, "3\n")]


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", ["docs/hooks.py", "scripts/screenshot_docs.py"])
def test_docs_tools_doctests(path: str):
    """The docs hook's and the screenshot script's examples pass as doctests."""
    pytest.importorskip("griffe")
    module = _load_script(ROOT / path)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed, f"{path}: {result}"


def test_docstring_maths_becomes_arithmatex():
    """Every ``:math:`` role and ``.. math::`` block of the package turns into KaTeX input."""
    pytest.importorskip("griffe")
    hooks = _load_script(ROOT / "docs" / "hooks.py")
    seen = 0
    for name in MODULES:
        for obj in vars(importlib.import_module(name)).values():
            doc = getattr(obj, "__doc__", None) if callable(obj) else None
            if not isinstance(doc, str) or "math:" not in doc:
                continue
            seen += 1
            converted = hooks.math_markup(doc)
            assert ":math:" not in converted and ".. math::" not in converted, converted
            assert "\\(" in converted or "\\[" in converted, converted
    assert seen, "no docstring uses :math: any more: drop this test or the hook's maths"


def test_home_page_links_every_page():
    """The home page's "Where to go" table links every page of docs/."""
    home = (DOCS / "index.md").read_text()
    table = home[home.index("## Where to go") :]
    table = table[: table.find("\n## ")] if "\n## " in table else table
    linked = set(re.findall(r"\]\(([\w.-]+\.md)\)", table))
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert not pages - linked, f"docs/index.md's Where to go table skips {sorted(pages - linked)}"
