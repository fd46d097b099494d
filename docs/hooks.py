"""mkdocs hook: Sphinx roles and ``.. math::`` blocks of docstrings, made readable.

The package's docstrings are Google style but cross-reference with Sphinx roles
(``:func:`~captum_rig.low_rank```), which Markdown renders literally: ":func:" followed
by code. This hook, run on every page's HTML, drops the role and turns the target into
an optional mkdocs-autorefs reference: a link when the API reference documents the
object, plain code otherwise. ``~`` shows the last name only, as in Sphinx. Re-exported
names (``captum_rig.low_rank``) are resolved to where they are defined, which is where
the reference documents them. ``.. math::`` blocks become code blocks of their LaTeX.
"""

import html
import importlib
import re
import textwrap
from typing import Optional

_ROLE = re.compile(
    r":(?:func|class|meth|data|attr|mod|obj|exc|const):<code>(?P<target>[^<]+)</code>"
)
_MATH = re.compile(r"<p>\.\. math::\s*(?P<body>.*?)</p>", re.S)


def _canonical(identifier: str) -> Optional[str]:
    """``package.name`` → ``defining.module.name`` by importing, when that works."""
    parts = identifier.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        defined_here = isinstance(module, str) and module.startswith("captum_rig")
        if defined_here and isinstance(qualname, str):
            return f"{module}.{qualname}"
        return identifier
    return None


def _replace(match: "re.Match[str]") -> str:
    target = html.unescape(match.group("target")).strip()
    short = target.startswith("~")
    target = target.lstrip("~")
    title = target.rsplit(".", 1)[-1] if short else target
    code = f"<code>{html.escape(title)}</code>"
    identifier = _canonical(target) if "." in target else None
    if identifier is None:
        return code
    return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'


def _math(match: "re.Match[str]") -> str:
    """A ``.. math::`` block (LaTeX source) shown as a code block."""
    body = textwrap.dedent(match.group("body")).strip()
    return f"<pre><code>{body}</code></pre>"


def on_page_content(html_text: str, **kwargs) -> str:
    """Runs on every page's HTML, before mkdocs-autorefs resolves the references."""
    html_text = _ROLE.sub(_replace, html_text)
    return _MATH.sub(_math, html_text)
