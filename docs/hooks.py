r"""mkdocs hook and griffe extension: the package's docstrings, made readable on the site.

The docstrings are Google style but borrow a few Sphinx constructs that Markdown would
render literally. Two pieces put them right:

- :class:`DocstringsForTheSite`, a griffe extension (``mkdocs.yml`` lists it under the
  mkdocstrings handler's ``extensions``), rewrites what griffe read before it is
  rendered: ``:math:`...``` roles and ``.. math::`` blocks become arithmatex markup,
  ``\(...\)`` and ``\[...\]`` (typeset in the browser by the vendored KaTeX, with the
  docstrings' Unicode operators turned into TeX commands); defaults that name a module
  constant (``method=PAPER``) show its value (``method='paper'``); module constants
  computed from others (``MODEL_NAMES = tuple(_MODELS)``) show their value; an Args line
  for several parameters (``size, resize: as in load_image``) becomes one per parameter,
  and a Returns section's ``name (type):`` shows its type.
- :func:`on_page_content`, run on every page's HTML: cross-reference roles
  (``:func:`~captum_rig.low_rank```) become optional mkdocs-autorefs references, a link
  when the API reference documents the object and plain code otherwise (``~`` shows the
  last name only, as in Sphinx; re-exported names resolve to where they are defined, which
  is where the reference documents them); ``\|`` in a table cell's code, the pipe
  escaped for the table, shows as ``|``.
- :func:`readable_formulas`, also on every page's HTML: a docstring formula written in
  Unicode with TeX-like sub- and superscripts (``Σ_{k=1}^{w} (w - k)/w · ∂F(x_k)/∂x_k``,
  in a code span or in the text) is shown with real sub- and superscripts in the text
  font, not as source. Code spans that are code (``cache_dir/{key}_{mode}{k}.pt``,
  ``n_steps``) stay as they are.
- :func:`on_page_markdown`: a shell block that is one Python heredoc is highlighted as
  Python; a page's ``{.markdown .output}`` block, Markdown that the code
  above it prints (a report's table), is shown rendered rather than as source.
"""

import ast
import html
import importlib
import re
import textwrap
from typing import Any, List, Optional

import griffe

_ROLE = re.compile(
    r":(?:func|class|meth|data|attr|mod|obj|exc|const):<code>(?P<target>[^<]+)</code>"
)
_CELL = re.compile(r"<td(?P<attrs>[^>]*)>(?P<body>.*?)</td>", re.S)
_CODE = re.compile(r"<code>(?P<body>[^<]*)</code>")
# A page's output block of printed Markdown (a report's to_markdown()).
_MARKDOWN_OUTPUT = re.compile(
    r"^```\{\.markdown \.output\}[ ]*\n(?P<body>.*?)\n```[ ]*$", re.M | re.S
)

# A shell block holding exactly one Python heredoc.
_HEREDOC_BLOCK = re.compile(
    r"^(?P<fence>```)(?:bash|sh|shell)[ ]*\n"
    r"(?P<body>python3? - <<'?(?P<tag>\w+)'?\n.*?\n(?P=tag)\n```)[ ]*$",
    re.M | re.S,
)

_MATH_ROLE = re.compile(r":math:`(?P<tex>[^`]+)`")
# ``.. math::`` and the lines indented under it (or blank) that follow.
_MATH_BLOCK = re.compile(
    r"^(?P<indent>[ ]*)\.\. math::[ ]*\n(?P<body>(?:(?P=indent)[ ]+\S.*\n|[ ]*\n)+)", re.M
)
# The docstrings write maths in Unicode; KaTeX wants commands for operators.
_TEX = {
    "Σ": r"\sum ",
    "σ": r"\sigma ",
    "ᵀ": r"^\top ",
    "∈": r"\in ",
    "≠": r"\neq ",
    "≤": r"\leq ",
    "≥": r"\geq ",
    "·": r"\cdot ",
    "×": r"\times ",
    "∂": r"\partial ",
    "∞": r"\infty ",
    "−": "-",
    "‖": r"\| ",
}
# An Args line documenting several parameters at once: "size, resize: as in load_image".
_GROUPED_ARGS = re.compile(r"^(?P<indent>[ ]+)(?P<names>\w+(?:, \w+)+): (?P<text>.*)$")
# A Returns section opening "name (type): ...": the site shows the type (one value).
_NAMED_RETURN = re.compile(r"^(?P<head>[ ]*Returns:\n[ ]+)\w+ \((?P<type>[^\n]+?)\): ", re.M)
_MAX_VALUE = 300  # longer computed values keep their source expression


# --------------------------------------------------------------------------------------
# griffe: docstrings and values, before rendering
# --------------------------------------------------------------------------------------


def tex(text: str) -> str:
    r"""Unicode operators of a docstring formula as TeX commands.

    Examples:
        >>> print(tex("Σ_i σ_i u_i v_iᵀ, t ∈ [0, w]"))
        \sum _i \sigma _i u_i v_i^\top , t \in  [0, w]
    """
    return "".join(_TEX.get(char, char) for char in text)


def math_markup(docstring: str) -> str:
    r"""``:math:`` roles and ``.. math::`` blocks of a docstring as arithmatex markup.

    Examples:
        >>> print(math_markup("With :math:`x_i`,\n\n.. math::\n    a = Σ_i b_i\n\nso."))
        With \(x_i\),
        <BLANKLINE>
        \[
        a = \sum _i b_i
        \]
        <BLANKLINE>
        so.
    """

    def block(match: "re.Match[str]") -> str:
        body = textwrap.dedent(match.group("body")).strip()
        indent = match.group("indent")
        lines = ["\\[", *tex(body).splitlines(), "\\]"]
        return "\n".join(indent + line for line in lines) + "\n\n"

    text = _MATH_BLOCK.sub(block, docstring + "\n").rstrip("\n")
    return _MATH_ROLE.sub(lambda m: f"\\({tex(m.group('tex'))}\\)", text)


def split_grouped_args(docstring: str) -> str:
    r"""One Args entry per parameter where a line documents several (griffe wants that).

    Examples:
        >>> print(split_grouped_args("Args:\n    size, resize: as in f.\n    x: one.\n\na, b: c"))
        Args:
            size: as in f.
            resize: as in f.
            x: one.
        <BLANKLINE>
        a, b: c
    """
    out: List[str] = []
    args_indent: Optional[int] = None  # the Args header's indentation while inside it
    for line in docstring.split("\n"):
        indent = len(line) - len(line.lstrip())
        if args_indent is not None and line.strip() and indent <= args_indent:
            args_indent = None
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            args_indent = indent
        match = _GROUPED_ARGS.match(line) if args_indent is not None else None
        if match is None:
            out.append(line)
            continue
        for name in match.group("names").split(", "):
            out.append(f"{match.group('indent')}{name}: {match.group('text')}")
    return "\n".join(out)


def returned_type(docstring: str) -> str:
    r"""A Returns section's ``name (type): text`` as ``type: text``, the form the site reads.

    Examples:
        >>> print(returned_type("Returns:\n    attributions (Tensor or tuple): as inputs."))
        Returns:
            Tensor or tuple: as inputs.
    """
    return _NAMED_RETURN.sub(lambda m: f"{m.group('head')}{m.group('type')}: ", docstring)


def _short_repr(value: Any, depth: int = 0) -> Optional[str]:
    """A literal-looking repr of a constant, or None when it has none worth showing."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if depth > 2:
        return None
    if isinstance(value, (tuple, list)):
        items = [_short_repr(v, depth + 1) for v in value]
        if None in items:
            return None
        inner = ", ".join(items) + ("," if isinstance(value, tuple) and len(items) == 1 else "")
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    if isinstance(value, dict):
        items = []
        for key, v in value.items():
            shown = _short_repr(v, depth + 1)
            if shown is None:
                # objects (registry entries) by their type only
                shown = f"{type(v).__name__}(...)"
            items.append(f"{key!r}: {shown}")
        return "{" + ", ".join(items) + "}"
    return None


def _is_literal(source: str) -> bool:
    try:
        ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return True


def _module_value(module_path: str, name: str) -> Any:
    """The runtime value of ``module_path.name``; AttributeError when there is none."""
    return getattr(importlib.import_module(module_path), name)


class DocstringsForTheSite(griffe.Extension):
    """Maths markup in docstrings, values instead of names in defaults and constants."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Runs once the package is loaded: visits every object it defines."""
        self._visit(pkg)

    def _visit(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            text = math_markup(obj.docstring.value)
            obj.docstring.value = returned_type(split_grouped_args(text))
        if obj.is_function:
            self._defaults(obj)
        if obj.is_attribute and obj.parent is not None and obj.parent.is_module:
            self._value(obj)
        for member in obj.members.values():
            if not member.is_alias:
                self._visit(member)

    def _defaults(self, func: griffe.Function) -> None:
        for parameter in func.parameters:
            default = parameter.default
            if not isinstance(default, griffe.ExprName):
                continue
            try:
                value = _module_value(func.module.path, default.name)
            except (ImportError, AttributeError):
                continue
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                parameter.default = repr(value)

    def _value(self, attr: griffe.Attribute) -> None:
        if attr.value is None or _is_literal(str(attr.value)):
            return
        try:
            value = _module_value(attr.module.path, attr.name)
        except (ImportError, AttributeError):
            return
        shown = _short_repr(value)
        if shown is not None and len(shown) <= _MAX_VALUE:
            attr.value = shown


# --------------------------------------------------------------------------------------
# mkdocs: cross-reference roles and table cells, on every page's HTML
# --------------------------------------------------------------------------------------


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


def _cell(match: "re.Match[str]") -> str:
    """A table cell whose code spans show ``|`` where the Markdown escaped it."""
    body = _CODE.sub(
        lambda m: "<code>" + m.group("body").replace("\\|", "|") + "</code>", match.group("body")
    )
    return f"<td{match.group('attrs')}>{body}</td>"


def _rendered_output(match: "re.Match[str]") -> str:
    body = match.group("body")
    return f'<div class="output rendered-output" markdown="1">\n\n{body}\n\n</div>\n'


def python_heredocs(markdown: str) -> str:
    r"""A shell block that is one Python heredoc (``python - <<'EOF'`` ... ``EOF``) is
    highlighted as the Python it mostly is; the page and its tests keep it a shell block.

    Examples:
        >>> print(python_heredocs("```bash\npython - <<'EOF'\nimport torch\nEOF\n```"))
        ```python
        python - <<'EOF'
        import torch
        EOF
        ```
        >>> python_heredocs("```bash\ncaptum-rig demo\n```")
        '```bash\ncaptum-rig demo\n```'
    """
    return _HEREDOC_BLOCK.sub(lambda m: f"{m['fence']}python\n{m['body']}", markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Printed Markdown (a ```{.markdown .output} block) is shown rendered, as a table;
    Python heredocs are highlighted as Python (:func:`python_heredocs`)."""
    return python_heredocs(_MARKDOWN_OUTPUT.sub(_rendered_output, markdown))


# A code span holding a formula: a maths symbol, a superscript group, or a subscript
# group after a letter or digit (not a format template's "}_{").
_MATH_CHARS = "Σσ∂·ᵀ≤≥∈∝∇√²π∞‖"
_FORMULA_CODE = re.compile(r"<code>(?P<body>[^<]*)</code>")
_GROUP = re.compile(r"(?<![}])(?P<op>[_^])\{(?P<body>[^{}]*)\}")
# x_k, σ_i, v_iᵀ, ∂x_k: a one-letter name and a one-character index (n_steps is a name).
_SUB = re.compile(r"(?<![\w])(?P<base>[A-Za-zα-ωΑ-Ω])_(?P<index>[A-Za-z0-9])(?![A-Za-z0-9_{])")
_SUP = re.compile(r"(?<=[\w)])\^(?P<index>[A-Za-z0-9])(?![A-Za-z0-9_{])")
_TAGS = {"_": "sub", "^": "sup"}
# What the text pass leaves alone: code, scripts, and TeX that KaTeX typesets.
_KEEP = re.compile(
    r"(<pre\b.*?</pre>|<script\b.*?</script>|<code\b.*?</code>"
    r'|<span class="arithmatex">.*?</span>|<div class="arithmatex">.*?</div>)',
    re.S,
)


def _is_formula(code: str) -> bool:
    return any(c in _MATH_CHARS for c in code) or bool(re.search(r"\^\{|[A-Za-z0-9]_\{", code))


def _scripts(text: str) -> str:
    """``_{...}``/``^{...}`` (innermost first) and one-letter ``x_k`` as sub/superscripts."""
    while True:
        new = _GROUP.sub(lambda m: f"<{_TAGS[m['op']]}>{m['body']}</{_TAGS[m['op']]}>", text)
        if new == text:
            break
        text = new
    text = _SUB.sub(lambda m: f"{m['base']}<sub>{m['index']}</sub>", text)
    return _SUP.sub(lambda m: f"<sup>{m['index']}</sup>", text)


def _text_scripts(text: str) -> str:
    """Sub/superscripts of prose: groups always; ``σ_i`` only beside a maths symbol."""
    if any(c in _MATH_CHARS for c in text):
        return _scripts(text)
    return _GROUP.sub(lambda m: f"<{_TAGS[m['op']]}>{m['body']}</{_TAGS[m['op']]}>", text)


def readable_formulas(html_text: str) -> str:
    r"""Formulas written with ``_{...}``/``^{...}`` shown with sub- and superscripts.

    A code span that holds a formula (a maths symbol such as Σ, σ, ∂, ·, ᵀ, or a
    ``^{...}`` group) becomes ``<span class="formula">`` in the text font; text outside
    code, pre, script and arithmatex elements (TeX for KaTeX) gets its ``_{...}`` and
    ``^{...}`` groups converted, and its ``σ_i`` too where it holds a maths symbol (a
    paragraph about ``n_steps`` alone is left as it is).

    Examples:
        >>> readable_formulas("<code>Σ_{k=1}^{w} (w - k)/w · ∂F(x_k)</code>")
        '<span class="formula">Σ<sub>k=1</sub><sup>w</sup> (w - k)/w · ∂F(x<sub>k</sub>)</span>'
        >>> readable_formulas("<code>cache_dir/{key}_{mode}{k}.pt</code> <code>n_steps</code>")
        '<code>cache_dir/{key}_{mode}{k}.pt</code> <code>n_steps</code>'
        >>> readable_formulas("<p>band j: r_{j-1} < radius</p><pre>a_{b}</pre>")
        '<p>band j: r<sub>j-1</sub> < radius</p><pre>a_{b}</pre>'
        >>> readable_formulas('<p id="a.x_k">with X = Σ_i σ_i u_i v_iᵀ</p>')
        '<p id="a.x_k">with X = Σ<sub>i</sub> σ<sub>i</sub> u<sub>i</sub> v<sub>i</sub>ᵀ</p>'
        >>> readable_formulas(r'<span class="arithmatex">\(\sum_{k=1}^{w}\)</span>')
        '<span class="arithmatex">\\(\\sum_{k=1}^{w}\\)</span>'
    """

    def code(match: "re.Match[str]") -> str:
        body = match["body"]
        if not _is_formula(body):
            return match.group(0)
        return f'<span class="formula">{_scripts(body)}</span>'

    parts = _KEEP.split(html_text)
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # pre, script or code
            out.append(_FORMULA_CODE.sub(code, part) if part.startswith("<code>") else part)
        else:  # the text between the tags (never an attribute: ids hold "x_k" too)
            pieces = re.split(r"(<[^>]*>)", part)
            out.extend(p if p.startswith("<") else _text_scripts(p) for p in pieces)
    return "".join(out)


def on_page_content(html_text: str, **kwargs: Any) -> str:
    r"""Runs on every page's HTML, before mkdocs-autorefs resolves the references.

    Examples:
        >>> on_page_content(r"<td><code>--norm linf\|l2</code></td>")
        '<td><code>--norm linf|l2</code></td>'
        >>> on_page_content(":func:<code>~captum_rig.low_rank</code>")
        '<autoref identifier="captum_rig.lowrank.low_rank" optional><code>low_rank</code></autoref>'
        >>> on_page_content(":class:<code>Tensor</code>")
        '<code>Tensor</code>'
    """
    html_text = _ROLE.sub(_replace, html_text)
    return readable_formulas(_CELL.sub(_cell, html_text))
