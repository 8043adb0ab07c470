"""The gradient-flow figure: ||dJ_T/ds_k||_2 and ||ds_T/ds_k||_2 of some ``flow.Flow`` against time.

Two panels on log axes, one curve per Flow (a scale of the recurrent weights, or given
parameters); ``render_png`` gives the same PNG bytes on every run (matplotlib's defaults, no
version in the file, marked as ours), and ``plot`` writes them to a file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from derive.emit.render import MARK, write_atomic
from derive.ir import naming
from derive.tools.flow.flow import Flow

FIGSIZE_INCHES = (12.0, 4.5)
DPI = 100  # FIGSIZE_INCHES * DPI = a PNG of 1200 x 450 pixels
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

Array = np.ndarray


def _plottable(values: Array) -> tuple[Array, int]:
    """The values with zero, negative and non-finite entries as nan (a log axis cannot show
    them), and how many there were."""
    ok = np.isfinite(values) & (values > 0)
    return np.where(ok, values, np.nan), int(np.count_nonzero(~ok))


def _legend(flow: Flow, hidden: int) -> str:
    if flow.overflow is not None:
        return f"{flow.label} (the state overflows at step {flow.overflow})"
    return flow.label if not hidden else f"{flow.label} ({hidden} not shown: zero or not finite)"


def _text(text: str) -> str:
    """User text (a cell's title) as plain text for matplotlib: a "$" would start mathtext."""
    return text.replace("$", r"\$")


def _stacked(states: tuple[str, ...]) -> str:
    """The stacked state: ``s = [h; c]``; with a delay line, each at step t: ``s_t = [h_t; h_{t-1}]``."""
    if any(naming.delay_of(s) for s in states):
        return f"$s_t = [{'; '.join(naming.latex_name(naming.step_name(s, 't')) for s in states)}]$"
    return f"$s = [{'; '.join(states)}]$" if len(states) > 1 else f"$s = {states[0]}$"


def _caption(flows: Sequence[Flow]) -> str:
    first = flows[0]
    sizes = ", ".join(f"$n_{{{d}}} = {n}$" for d, n in first.sizes.items())
    stacked = _stacked(first.states)
    if first.params_given:
        how = "given parameters"
    elif not first.recurrent:
        how = "$\\mathcal{N}(0, 1/\\mathrm{fan\\_in})$; no recurrent weight to scale"
    else:
        weights = ", ".join(first.recurrent)
        how = f"$\\mathcal{{N}}(0, 1/\\mathrm{{fan\\_in}})$, recurrent weights ({weights}) $\\times$ scale"
    return f"{stacked}; {sizes}; seed {first.seed}; {how}; $A_j = \\partial s_j / \\partial s_{{j-1}}$"


def render_png(flows: Sequence[Flow]) -> bytes:
    """The two-panel figure as PNG bytes, FIGSIZE_INCHES * DPI pixels, the same bytes every run."""
    if not flows:
        raise ValueError("flows: expected at least one Flow")
    # matplotlib only here: importing it takes half a second that gradient_flow does not need
    import matplotlib

    with matplotlib.rc_context():  # matplotlib's own defaults, whatever the user's matplotlibrc says
        matplotlib.rcdefaults()
        return _render_png(flows)


def _render_png(flows: Sequence[Flow]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

    fig = Figure(figsize=FIGSIZE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    shown = {left: 0, right: 0}  # the points a log axis can draw, by panel
    for i, flow in enumerate(flows):
        style = {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)], "markersize": 3.5}
        k = np.arange(flow.steps + 1)
        grad, g_off = _plottable(np.asarray(flow.grad_norm))
        jac, j_off = _plottable(np.asarray(flow.jacobian_norm))
        left.plot(k, grad, label=_legend(flow, g_off), **style)
        right.plot(flow.steps - k, jac, label=_legend(flow, j_off), **style)
        shown[left] += grad.size - g_off
        shown[right] += jac.size - j_off
    longest = max(f.steps for f in flows)
    for ax in (left, right):
        ax.set_xlim(-0.02 * longest - 0.5, 1.02 * longest + 0.5)  # also when no point can be drawn
        if not shown[ax]:  # a log axis with nothing on it cannot scale itself: say so instead
            ax.set_ylim(1e-16, 1e1)
            ax.text(0.5, 0.5, "every value is zero or not finite", transform=ax.transAxes, ha="center")
        ax.set_yscale("log")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="small")
    left.set_xlabel("$k$")
    left.set_ylabel(r"$\Vert\, \partial J_T / \partial s_k \,\Vert_2$")
    left.set_title("gradient of the last loss $J_T$ with respect to the state $s_k$")
    right.set_xlabel("$T - k$ (steps back)")
    right.set_ylabel(r"$\Vert\, \partial s_T / \partial s_k \,\Vert_2$")
    right.set_title(r"spectral norm of $\partial s_T / \partial s_k = A_T A_{T-1} \cdots A_{k+1}$")
    names = dict.fromkeys(_text(f"{f.cell}: {f.title}") for f in flows)
    lengths = dict.fromkeys(str(f.steps) for f in flows)
    fig.suptitle(f"Gradient flow back in time: {', '.join(names)}, $T = {', '.join(lengths)}$\n{_caption(flows)}")
    buffer = io.BytesIO()
    full = Bbox.from_bounds(0, 0, *FIGSIZE_INCHES)  # the whole figure, whatever savefig.bbox says
    # no Software (matplotlib's version) in the file; the mark lets an overwrite check know the PNG is ours
    metadata = {"Software": None, "Comment": MARK}
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches=full, metadata=metadata)
    return buffer.getvalue()


def plot(flows: Sequence[Flow], path: Path) -> None:
    """Write the figure of ``flows`` to ``path`` (PNG), atomically; the folder is created."""
    data = render_png(flows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
