"""Builds the docs site, screenshots every page in headless Chromium, checks the maths.

The site is built with ``mkdocs build --strict``, served on 127.0.0.1 (a free port) and
each page is opened twice by Chromium: once with ``--dump-dom`` for the DOM after the
page's scripts (KaTeX) ran, which also gives the page's full height, then for a PNG of
the whole page (1280 px wide by default, as tall as the page). The script fails (exit
status 1) when the rendered text still holds untypeset maths: raw LaTeX (``\\frac``,
``\\sum``, ``$$``, ``\\(``/``\\[`` delimiters KaTeX never rendered), TeX-style sub- and
superscripts left as text (``Σ_{k=1}^{w}``, ``r_{j-1}``, ``x^{2}``), a Sphinx ``:math:``
role, or a KaTeX error. Nothing is fetched from the network: KaTeX is vendored under
``docs/js/``.

Chromium comes from the Debian packages (``apt-get install -y chromium``). Without it
(or with ``--html-only``) the same check reads the built HTML instead, where the maths
KaTeX would typeset (``arithmatex`` elements) is left out::

    python scripts/screenshot_docs.py --out screenshots
    python scripts/screenshot_docs.py --out screenshots --pages index tutorial_rig
    python scripts/screenshot_docs.py --html-only      # no browser: the built HTML
"""

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Text that must not survive rendering: LaTeX commands and delimiters, Sphinx roles.
RAW_MATH = re.compile(r"\\frac|\\sum|\\mathrm|\$\$|\\\(|\\\)|\\\[|\\\]|:math:")
# Outside code blocks, TeX-style sub- and superscripts left as text: "Σ_{k=1}^{w}",
# "r_{j-1}", "σ_i" (a format template's "{key}_{mode}" is not maths).
RAW_SCRIPTS = re.compile(r"(?<![}])_\{|\^\{|[Σσ]_")
# Elements whose text is rendered maths (KaTeX keeps the TeX source in an annotation)
# or never shown.
_SKIP_CLASSES = ("katex",)
_SKIP_TAGS = ("script", "style", "annotation", "head")
# Set on every page before it is served: the page's full height, read from the DOM.
_HEIGHT_SCRIPT = (
    '<script>window.addEventListener("load", function () {'
    ' document.documentElement.setAttribute("data-page-height",'
    " document.documentElement.scrollHeight); });</script>"
)
_PAGE_HEIGHT = re.compile(r'data-page-height="(\d+)"')
MAX_HEIGHT = 40000  # pixels: Chromium's screenshots stay below its texture limits
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class _VisibleText(HTMLParser):
    """Collects the text of a DOM outside rendered maths, scripts and styles; ``prose``
    is the part outside code blocks (``pre``)."""

    def __init__(self, skip_classes=_SKIP_CLASSES) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_classes = skip_classes
        self.depth_skipped = 0  # >0 while inside an element whose text is skipped
        self.depth_pre = 0
        self.stack: List[tuple] = []
        self.text: List[str] = []
        self.prose: List[str] = []
        self.katex_errors = 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if "katex-error" in classes:
            self.katex_errors += 1
        if tag in _VOID:
            return
        skip = tag in _SKIP_TAGS or any(c in self.skip_classes for c in classes)
        self.stack.append((skip, tag == "pre"))
        self.depth_skipped += skip
        self.depth_pre += tag == "pre"

    def handle_endtag(self, tag):
        if tag in _VOID or not self.stack:
            return
        skip, pre = self.stack.pop()
        self.depth_skipped -= skip
        self.depth_pre -= pre

    def handle_data(self, data):
        if not self.depth_skipped:
            self.text.append(data)
            if not self.depth_pre:
                self.prose.append(data)


def dom_problems(dom: str, built: bool = False) -> List[str]:
    r"""What is wrong with one page's rendered DOM: raw LaTeX, TeX-style sub- and
    superscripts left as text, roles, KaTeX errors.

    Args:
        dom (str): the page's HTML after its scripts ran (Chromium's ``--dump-dom``).
        built (bool): ``dom`` is mkdocs' built HTML, before any script ran: the
            ``arithmatex`` elements, which KaTeX typesets in the browser, are left out.

    Returns:
        list[str]: one message per problem, empty for a good page.

    Examples:
        >>> dom_problems(r'<p>so <span class="katex">\frac{a}{b}</span></p>')
        []
        >>> dom_problems(r"<p>x = \frac{a}{b}</p>")
        ['raw maths in the text: ...x = \\frac{a}{b}...']
        >>> dom_problems("<p>:math:`x`</p>")
        ['raw maths in the text: ...:math:`x`...']
        >>> dom_problems("<p>band j: <code>r_{j-1} &lt; radius</code></p>")
        ['untypeset sub/superscript: ...band j: r_{j-1} < radius...']
        >>> dom_problems("<p><code>{key}_{mode}.pt</code></p><pre>a_{b}</pre>")
        []
        >>> dom_problems(r'<span class="arithmatex">\(x_{i}\)</span>', built=True)
        []
    """
    parser = _VisibleText(_SKIP_CLASSES + ("arithmatex",) if built else _SKIP_CLASSES)
    parser.feed(dom)
    text, prose = "".join(parser.text), "".join(parser.prose)
    problems = []
    for pattern, what, where in (
        (RAW_MATH, "raw maths in the text", text),
        (RAW_SCRIPTS, "untypeset sub/superscript", prose),
    ):
        for m in pattern.finditer(where):
            context = where[max(0, m.start() - 40) : m.end() + 40].replace("\n", " ")
            problems.append(f"{what}: ...{context}...")
    if parser.katex_errors:
        problems.append(f"{parser.katex_errors} KaTeX error(s) (red source text)")
    return problems


def build(site: Path) -> None:
    """``mkdocs build --strict`` into ``site``; exits with mkdocs' output on failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"mkdocs build --strict failed:\n{proc.stderr}")


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    """Serves ``site`` on 127.0.0.1 at a free port, in a daemon thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def chromium(args: List[str], profile: Path, timeout: float = 120) -> str:
    """Runs headless Chromium with ``args``; returns its stdout."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        sys.exit("chromium is not installed: apt-get update && apt-get install -y chromium")
    proc = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"chromium {args} failed: {proc.stderr[-2000:]}")
    return proc.stdout


def site_pages(site: Path, only: Optional[List[str]] = None) -> List[str]:
    """Paths (relative to the site root, ``""`` for the home page) of every page."""
    pages = []
    for index in sorted(site.rglob("index.html")):
        rel = index.parent.relative_to(site).as_posix()
        rel = "" if rel == "." else rel
        if rel.startswith(("search", "assets")):
            continue
        if only is None or (rel or "index") in only:
            pages.append(rel)
    return pages


def mark_heights(site: Path) -> None:
    """Adds the script that records each page's full height to every page of ``site``."""
    for index in site.rglob("index.html"):
        page = index.read_text(encoding="utf-8")
        index.write_text(page.replace("</body>", _HEIGHT_SCRIPT + "</body>", 1), "utf-8")


def page_height(dom: str, default: int) -> int:
    """The page's full height in pixels from its DOM (``default`` when not recorded).

    Examples:
        >>> page_height('<html data-page-height="5321"><body></body></html>', 2000)
        5321
        >>> page_height("<html></html>", 2000), page_height('data-page-height="90000"', 1)
        (2000, 40000)
    """
    m = _PAGE_HEIGHT.search(dom)
    return min(int(m.group(1)), MAX_HEIGHT) if m else default


def _report(name: str, problems: List[str]) -> None:
    print(f"{'FAIL' if problems else 'ok':4s} {name}")
    for problem in problems:
        print(f"     {problem}")


def check_built(site: Path, pages: Optional[List[str]]) -> int:
    """The rendered-text check on the built HTML (no browser); returns the failures."""
    failures = 0
    for page in site_pages(site, pages):
        problems = dom_problems((site / page / "index.html").read_text("utf-8"), built=True)
        failures += bool(problems)
        _report(f"{page or 'index'} (built HTML)", problems)
    return failures


def screenshot_all(site: Path, profile: Path, args: argparse.Namespace) -> int:
    """Serves ``site``; per page the DOM (checked) and a full-page PNG; returns failures."""
    mark_heights(site)
    server = serve(site)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    width, height = (int(v) for v in args.size.split(","))
    failures = 0
    try:
        for page in site_pages(site, args.pages):
            url = base + (page + "/" if page else "")
            png = args.out / f"{(page or 'index').replace('/', '_')}.png"
            dom = chromium(["--dump-dom", "--virtual-time-budget=10000", url], profile)
            size = f"--window-size={width},{page_height(dom, height)}"
            chromium([f"--screenshot={png.resolve()}", size, "--hide-scrollbars", url], profile)
            problems = dom_problems(dom)
            failures += bool(problems)
            _report(str(png), problems)
    finally:
        server.shutdown()
    return failures


def main(argv: Optional[List[str]] = None) -> int:
    """Builds, serves, screenshots and checks; returns the exit status."""
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--out", type=Path, default=Path("build/docs-screenshots"), help="PNG folder")
    cli.add_argument("--pages", nargs="*", help="page names (index, tutorial_rig, ...)")
    cli.add_argument(
        "--size",
        default="1280,2000",
        help="WIDTH,HEIGHT; the height of a page whose "
        "full height could not be read (default: %(default)s)",
    )
    cli.add_argument(
        "--html-only", action="store_true", help="no browser: check the built HTML only"
    )
    args = cli.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None and not args.html_only:
        print("chromium is not installed: checking the built HTML only", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        site, profile = Path(tmp) / "site", Path(tmp) / "profile"
        build(site)
        if args.html_only or browser is None:
            failures = check_built(site, args.pages)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            failures = screenshot_all(site, profile, args)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
