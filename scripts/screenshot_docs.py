"""Builds the docs site, screenshots every page in headless Chromium, checks the maths.

The site is built with ``mkdocs build --strict``, served on 127.0.0.1 (a free port) and
each page is opened twice by Chromium: once for a PNG of its top (1280×2000 by default),
once with ``--dump-dom`` for the DOM after the page's scripts (KaTeX) ran. The script
fails (exit status 1) when the rendered text still holds raw LaTeX (``\\frac``,
``\\sum``, ``$$``, ``\\(``/``\\[`` delimiters KaTeX never rendered), a Sphinx
``:math:`` role, or a KaTeX error. Nothing is fetched from the network: KaTeX is vendored
under ``docs/js/``.

Chromium comes from the Debian packages (``apt-get install -y chromium``)::

    python scripts/screenshot_docs.py --out screenshots
    python scripts/screenshot_docs.py --out screenshots --pages index tutorial_rig
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
# Elements whose text is rendered maths (KaTeX keeps the TeX source in an annotation)
# or never shown.
_SKIP_CLASSES = ("katex",)
_SKIP_TAGS = ("script", "style", "annotation", "head")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class _VisibleText(HTMLParser):
    """Collects the text of a DOM outside rendered maths, scripts and styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth_skipped = 0  # >0 while inside an element whose text is skipped
        self.stack: List[bool] = []
        self.text: List[str] = []
        self.katex_errors = 0

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if "katex-error" in classes:
            self.katex_errors += 1
        if tag in _VOID:
            return
        skip = tag in _SKIP_TAGS or any(c in _SKIP_CLASSES for c in classes)
        self.stack.append(skip)
        self.depth_skipped += skip

    def handle_endtag(self, tag):
        if tag in _VOID or not self.stack:
            return
        self.depth_skipped -= self.stack.pop()

    def handle_data(self, data):
        if not self.depth_skipped:
            self.text.append(data)


def dom_problems(dom: str) -> List[str]:
    r"""What is wrong with one page's rendered DOM: raw LaTeX, roles, KaTeX errors.

    Args:
        dom (str): the page's HTML after its scripts ran (Chromium's ``--dump-dom``).

    Returns:
        list[str]: one message per problem, empty for a good page.

    Examples:
        >>> dom_problems(r'<p>so <span class="katex">\frac{a}{b}</span></p>')
        []
        >>> dom_problems(r"<p>x = \frac{a}{b}</p>")
        ['raw maths in the text: ...x = \\frac{a}{b}...']
        >>> dom_problems("<p>:math:`x`</p>")
        ['raw maths in the text: ...:math:`x`...']
    """
    parser = _VisibleText()
    parser.feed(dom)
    text = "".join(parser.text)
    problems = []
    for m in RAW_MATH.finditer(text):
        context = text[max(0, m.start() - 40) : m.end() + 40].replace("\n", " ")
        problems.append(f"raw maths in the text: ...{context}...")
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


def main(argv: Optional[List[str]] = None) -> int:
    """Builds, serves, screenshots and checks; returns the exit status."""
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--out", type=Path, default=Path("build/docs-screenshots"), help="PNG folder")
    cli.add_argument("--pages", nargs="*", help="page names (index, tutorial_rig, ...)")
    cli.add_argument("--size", default="1280,2000", help="window size WIDTH,HEIGHT")
    args = cli.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site, profile = Path(tmp) / "site", Path(tmp) / "profile"
        build(site)
        server = serve(site)
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        failures = 0
        try:
            for page in site_pages(site, args.pages):
                url = base + (page + "/" if page else "")
                png = args.out / f"{(page or 'index').replace('/', '_')}.png"
                size = f"--window-size={args.size}"
                chromium([f"--screenshot={png.resolve()}", size, url], profile)
                dom = chromium(["--dump-dom", "--virtual-time-budget=10000", url], profile)
                problems = dom_problems(dom)
                failures += bool(problems)
                status = "FAIL" if problems else "ok"
                print(f"{status:4s} {png}")
                for problem in problems:
                    print(f"     {problem}")
        finally:
            server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
