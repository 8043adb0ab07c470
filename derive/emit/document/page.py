"""The derivation as an HTML page that renders its maths offline.

The page is the Markdown document (``derivation.md.j2``) turned into HTML by markdown-it-py, with
its ``$``/``$$`` maths kept for MathJax, and MathJax itself (the ``tex-svg-full`` component of the
MathJax 3 distribution that the django-static-mathjax package ships) inlined into the page: it
needs no network and no file beside it, and the SVG output draws the glyphs as paths, so no font
is fetched either.  Images the Markdown links to (the gradient-flow plot) are inlined as data URIs.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import re
from importlib import resources
from typing import Any

MEDIA_TYPES = {"png": "image/png", "svg": "image/svg+xml"}
MATHJAX_COMPONENT = "es5/tex-svg-full.js"  # TeX in, SVG out, every TeX extension built in: nothing loads later


@functools.cache
def mathjax() -> tuple[str, str]:
    """MathJax's version and the source of its component, from the installed package."""
    root = resources.files("mathjax").joinpath("static", "mathjax")
    version = json.loads(root.joinpath("package.json").read_text(encoding="utf-8"))["version"]
    source = root.joinpath(*MATHJAX_COMPONENT.split("/")).read_text(encoding="utf-8")
    if "</script" in source.lower():  # it would end the inline <script> early
        raise RuntimeError(f"MathJax {version}'s {MATHJAX_COMPONENT} contains '</script' and cannot be inlined")
    return version, source


def _math(content: str, options: dict[str, Any]) -> str:
    """Maths for MathJax: its TeX, escaped, between \\( \\) or \\[ \\]; the plugin wraps it in an
    element of class math."""
    tex = html.escape(content, quote=False)
    return f"\\[{tex}\\]" if options.get("display_mode") else f"\\({tex}\\)"


def markdown_html(markdown: str, images: dict[str, bytes] | None = None) -> str:
    """The Markdown's body as HTML (CommonMark with GitHub's tables); the images named in
    ``images`` (PNG or SVG, by their names) are inlined as data URIs."""
    # only here: a command that writes no page does not pay for importing them
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    dollarmath_plugin(md, allow_labels=False, allow_space=False, allow_blank_lines=False, renderer=_math)
    body = md.render(markdown)
    for name, data in (images or {}).items():
        uri = f"data:{MEDIA_TYPES[name.rsplit('.', 1)[-1]]};base64," + base64.b64encode(data).decode("ascii")
        body = body.replace(f'src="{html.escape(name)}"', f'src="{uri}"')
    return body


def plain_title(heading_md: str) -> str:
    """A Markdown heading as the text of <title>: the maths delimiters dropped, an escaped
    character kept as itself (an escaped $ too)."""
    return re.sub(r"\\(.)|\$", lambda m: m.group(1) or "", heading_md)
