"""Stage 6a: print a derivation into the strings the NumPy module template lays out.

Two implementations come out of one derivation:

- the fast path: the cell's equations in a loop over t on (B, n) row-vector
  batches, then the program of ``adjoint`` in a loop from T down to 1, what
  needs no loop hoisted out of it for every step at once (``schedule`` decides
  where each statement goes, ``fast`` prints it);
- the by-definition path: the unrolled equations for the derived T on (n, 1)
  column vectors, every local Jacobian as an explicit matrix, and every
  chain-rule term of ``chain`` as a literal product, one block per (w, J_t).

Everything here is printing; the template only places the strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import sympy as sp

from derive.derivation.analytic import factor_matrix
from derive.derivation.chain import Blocks, Factor, Term, move_paths, stacked_name
from derive.derivation.pipeline import Derivation
from derive.derivation.unroll import Unrolled
from derive.emit.numpy.fast import KEEP, Hoisted, Line, dim_code, hoisted, truncated_backward
from derive.emit.printing import ColumnPrinter, equation_text
from derive.ir import naming
from derive.ir.cell import Cell
from derive.ir.exprs import BinaryCrossEntropy, Outer, outer_terms
from derive.ir.ops import HELPERS

# the module's helpers it defines only where its code calls them (templates/module.py.j2)
OPTIONAL_HELPERS = (
    "_squared_error",
    "_binary_cross_entropy",
    "_sigmoid_binary_cross_entropy",
    "_log_softmax",
    "_total",
)


@dataclass(frozen=True)
class Block:
    """Lines under one comment header."""

    header: str
    lines: tuple[Line, ...]


# ---- by definition ---------------------------------------------------------------


def _unrolled(derivation: Derivation) -> Unrolled:
    if derivation.unrolled is None:
        raise ValueError(
            f"the by-definition code is written for T <= {derivation.expandable}, not T = {derivation.steps}"
        )
    return derivation.unrolled


def definition_forward(derivation: Derivation) -> tuple[Line, ...]:
    printer = ColumnPrinter()
    out = []
    for lhs, rhs in _unrolled(derivation).equations:
        shape = "scalar" if lhs.shape == (1, 1) else f"({dim_code(lhs.shape[0])}, 1)"
        out.append(Line(f"{printer.doprint(lhs)} = {printer.doprint(rhs)}", shape))
    return tuple(out)


def _raw_paths(derivation: Derivation) -> list[tuple[Factor, ...]]:
    """The paths whose edges the by-definition code multiplies: the terms themselves for one state;
    for several states the paths inside the blocks and tails of every block term."""
    if not derivation.blocks:
        return [term.factors for expansion in derivation.expansions.values() for term in expansion.terms]
    out: list[tuple[Factor, ...]] = []
    for wrt, expansion in derivation.expansions.items():
        f = derivation.factorized[wrt]
        assert isinstance(f, Blocks)
        for term in expansion.terms:
            if not _is_block(derivation, term):
                out.append(term.factors)
                continue
            out += [p for paths in f.head for p in move_paths(paths, term.loss_step)]
            for factor in term.factors[1:-1]:
                j = naming.step_of(factor.num)
                out += [p for row in f.step for paths in row for p in move_paths(paths, j, "j")]
            if not f.initial:
                out += [p for paths in f.tail for p in move_paths(paths, term.entry_step, "k")]
    return out


def _is_block(derivation: Derivation, term: Term) -> bool:
    return derivation.blocks and naming.split(term.factors[0].den)[0] == stacked_name(derivation.cell)


def definition_jacobians(derivation: Derivation) -> tuple[Line, ...]:
    """Every local Jacobian any term uses, once, in the order first used; then, for a cell with
    several states, the blocks dJ_t/ds_t and ds_j/ds_{j-1} built from them."""
    printer = ColumnPrinter()
    lines = []
    edges = dict.fromkeys(f for path in _raw_paths(derivation) for f in path)
    for f in edges:
        matrix = factor_matrix(_unrolled(derivation), f)
        if outer_terms(matrix):
            continue
        shape = f"({dim_code(matrix.shape[0])}, {dim_code(matrix.shape[1])})"
        lines.append(Line(f"{naming.jacobian_local(f.num, f.den)} = {printer.doprint(matrix)}", shape))
    if derivation.blocks:
        lines += _block_lines(derivation)
    return tuple(lines)


def _path_sum(paths: list[tuple[Factor, ...]], rows: str, cols: str) -> str:
    """The sum over paths of the products of their edge locals; zeros of (rows, cols) for no path."""
    if not paths:
        return f"np.zeros(({rows}, {cols}))"
    return " + ".join(" @ ".join(naming.jacobian_local(f.num, f.den) for f in path) for path in paths)


def _state_dims(derivation: Derivation) -> list[str]:
    return [f"n_{s.dim}" for s in derivation.cell.states]


def _block_lines(derivation: Derivation) -> list[Line]:
    """dJ_t/ds_t (a row of blocks) and ds_j/ds_{j-1} (a matrix of blocks), from the paths inside a step."""
    cell = derivation.cell
    f = next(iter(derivation.factorized.values()))
    assert isinstance(f, Blocks)
    s = stacked_name(cell)
    dims = _state_dims(derivation)
    width = " + ".join(dims)
    used = {x for expansion in derivation.expansions.values() for term in expansion.terms for x in term.factors}
    lines = []
    for t in cell.loss_steps(derivation.steps):
        head = Factor(naming.step_name(cell.loss, t), naming.step_name(s, t))
        if head in used:
            blocks = ", ".join(_path_sum(move_paths(f.head[a], t), "1", dims[a]) for a in range(len(dims)))
            lines.append(Line(f"{naming.jacobian_local(head.num, head.den)} = np.hstack([{blocks}])", f"(1, {width})"))
    for j in range(derivation.steps, 0, -1):
        factor = Factor(naming.step_name(s, j), naming.step_name(s, j - 1))
        if factor not in used:
            continue
        rows = []
        for a in range(len(dims)):
            row = [_path_sum(move_paths(f.step[a][b], j, "j"), dims[a], dims[b]) for b in range(len(dims))]
            rows.append(f"[{', '.join(row)}]")
        code = f"{naming.jacobian_local(factor.num, factor.den)} = np.block([{', '.join(rows)}])"
        lines.append(Line(code, f"({width}, {width})"))
    return lines


def _state_slices(derivation: Derivation) -> list[str]:
    """``[:, lo:hi]`` of each state's block in a row over the stacked state."""
    dims = _state_dims(derivation)
    out = []
    for a in range(len(dims)):
        lo = " + ".join(dims[:a])
        hi = " + ".join(dims[: a + 1]) if a < len(dims) - 1 else ""
        out.append(f"[:, {lo}:{hi}]")
    return out


def _path_code(derivation: Derivation, row: list[str], path: tuple[Factor, ...]) -> str:
    """``row`` (1 x n, or nothing) times the path's Jacobians, made the shape of what the path ends at."""
    places = outer_terms(factor_matrix(_unrolled(derivation), path[-1]))
    parts = row + [naming.jacobian_local(f.num, f.den) for f in (path[:-1] if places else path)]
    if not places:
        return f"({' @ '.join(parts)}).T"
    return " + ".join(_place_code(parts, place) for place in places)


def _place_code(parts: list[str], place: Outer) -> str:
    """One place where w enters, for the row g^T = ``parts``: (g^T L)^T v^T, or v (g^T L) for w^T v."""
    printer = ColumnPrinter()
    if not isinstance(place.left, sp.Identity):
        parts = [*parts, printer.operand(place.left)]
    product = " @ ".join(parts) or "np.ones((1, 1))"  # J_t = w v itself: dJ_t/dJ_t = 1
    if place.transposed:
        return f"{printer.operand(place.right)} @ {product if len(parts) == 1 else f'({product})'}"
    return f"({product}).T @ {printer.doprint(sp.Transpose(place.right))}"


def _term_code(derivation: Derivation, term: Term) -> list[str]:
    """The term as code, the last line its value: the product of its Jacobian locals, made the
    shape of what it differentiates.  A block term (dJ_t/ds_t)(ds_t/ds_{t-1}) ... (ds_k/dw)
    first computes the row dJ_dsk = dJ_t/ds_k, then sends each state's slice of it down that
    state's paths to w inside step k."""
    if not _is_block(derivation, term):
        return [_path_code(derivation, [], term.factors)]
    row = " @ ".join(naming.jacobian_local(f.num, f.den) for f in term.factors[:-1])
    f = derivation.factorized[term.factors[-1].den]
    assert isinstance(f, Blocks)
    slices = _state_slices(derivation)
    if f.initial:
        return [f"({row}){slices[f.initial_index]}.T"]
    parts = [
        _path_code(derivation, [f"dJ_dsk{slices[a]}"], path)
        for a in range(len(f.states))
        for path in move_paths(f.tail[a], term.entry_step, "k")
    ]
    return [f"dJ_dsk = {row}", " + ".join(parts)]


def definition_terms(derivation: Derivation) -> tuple[Block, ...]:
    blocks = []
    for wrt, expansion in derivation.expansions.items():
        for terms in expansion.per_loss:
            if not terms:
                continue
            t = terms[0].loss_step
            lines = []
            initial = wrt not in derivation.cell.param_names
            for term in terms:
                path = " ".join(f"d{naming.text_name(f.num)}/d{naming.text_name(f.den)}" for f in term.factors)
                label = path if initial else f"k = {term.entry_step}: {path}"
                *before, last = _term_code(derivation, term)
                lines += [Line(code, label if i == 0 else "") for i, code in enumerate(before)]
                lines.append(Line(f"{naming.grad_local(wrt)} += {last}", "" if before else label))
            header = f"dJ_{t}/d{naming.text_name(wrt)}: {len(terms)} term{'s' if len(terms) > 1 else ''}"
            blocks.append(Block(header, tuple(lines)))
    return tuple(blocks)


def _shapes_doc(cell: Cell, inputs: list[dict[str, str]], targets: list[dict[str, str]], target_arg: str) -> str:
    """The docstring's line on argument shapes."""
    last = cell.loss_mode == "last"

    def target_shape(v: dict[str, str]) -> str:
        n = f"n_{v['dim']}"
        if v["kind"] == "class":
            return ("() or (B,)" if last else "(T,) or (T, B)") + f" of ints in [0, {n})"
        return f"({n},) or (B, {n})" if last else f"(T, {n}) or (T, B, {n})"

    parts = []
    xs = [f"(T, n_{v['dim']}) or (T, B, n_{v['dim']})" for v in inputs]
    if len(inputs) == 1:
        parts.append(f"``xs`` {xs[0]}")
    else:
        parts.append("``xs`` a dict: " + ", ".join(f"``{v['name']!r}`` {x}" for v, x in zip(inputs, xs)))
    if len(targets) == 1:
        parts.append(f"``{target_arg}`` {target_shape(targets[0])}")
    else:
        parts.append(f"``{target_arg}`` a dict: " + ", ".join(f"``{v['name']!r}`` {target_shape(v)}" for v in targets))
    return ";\n".join(parts)


def _py_tuple(names: tuple[str, ...]) -> str:
    """A tuple literal of strings in double quotes: ``("W_xh", "W_hh")``."""
    inner = ", ".join(f'"{n}"' for n in names)
    return f"({inner},)" if len(names) == 1 else f"({inner})"


def _per_step(v: Any, arg: str, several: bool, i: int) -> dict[str, str]:
    """An input or target as ``_prepare`` reads it: one array, or one of a dict's by name."""
    return {
        "name": v.name,
        "dim": v.dim,
        "kind": getattr(v, "kind", ""),
        "code": naming.code_base(v.name),
        "var": f"{arg}_{i}" if several else arg,  # the argument's array inside _prepare
        "fetch": f"{arg}[{v.name!r}]" if several else arg,
        "label": f"{arg}[{v.name!r}]" if several else arg,
    }


def _arguments(cell: Cell) -> dict[str, Any]:
    """The module's signature: inputs, targets, initial states, and what ``_prepare`` returns."""
    single_class = len(cell.targets) == 1 and cell.targets[0].kind == "class"
    target_arg = "labels" if single_class else "targets"
    inputs = [_per_step(v, "xs", len(cell.inputs) > 1, i) for i, v in enumerate(cell.inputs)]
    targets = [_per_step(v, target_arg, len(cell.targets) > 1, i) for i, v in enumerate(cell.targets)]
    initial: list[dict[str, Any]] = [
        {
            "name": s.name,
            "arg": naming.initial_arg(s.name),
            "dim": s.dim,
            "carried": naming.carried_local(s.name),  # a kept (B, n) array: returned as a copy
            "local": naming.code_local(naming.step_name(s.name, 0)),
        }
        for s in cell.declared_states
    ]
    # the delay lines' states (h[t-2], x[t-1]): zeros at step 0 (h_{-1}, x_0), no argument, no gradient
    delays = [
        {
            "name": d.name,
            "dim": d.dim,
            "text": naming.text_name(naming.step_name(d.name, 0)),
            "local": naming.code_local(naming.step_name(d.name, 0)),
            "carried": naming.carried_local(d.name),  # its share carried to t - 1: nothing before step 1
        }
        for d in cell.delays
    ]
    prepared = [v["code"] for v in inputs + targets] + [s["arg"] for s in initial] + ["batched"]
    return {
        "inputs": inputs,
        "targets": targets,
        "target_arg": target_arg,
        "prepared": ", ".join(prepared) + ", sizes, dtype, weights",
        "classes": any(v["kind"] == "class" for v in targets),
        "prepared_doc": ", ".join(v["code"] for v in inputs + targets),
        "shapes_doc": _shapes_doc(cell, inputs, targets, target_arg),
        "named_sigmoid": any(
            isinstance(bce.p, sp.MatrixSymbol) for bce in cell.equation(cell.loss).rhs.atoms(BinaryCrossEntropy)
        ),
        "initial": initial,
        "delays": delays,
        "initial_args": ", ".join(s["arg"] for s in initial),
        "initial_defaults": ", ".join(f"{s['arg']}=None" for s in initial),
        "initial_names": ", ".join(f'``"{s["arg"]}"``' for s in initial),
        "initial_doc": "; ".join(f"``{s['arg']}`` (n_{s['dim']},) or (B, n_{s['dim']})" for s in initial),
    }


def _fast_path(derivation: Derivation) -> dict[str, Any]:
    """The fast path's lines, hoisted, and the truncated run's."""
    cell = derivation.cell
    run = truncated_backward(derivation.program)
    fast = hoisted(derivation)
    return {
        "hoisted": fast,
        **_work(derivation, fast),
        "truncate": derivation.truncate,
        "truncated_zeros": run.zeros,
        "truncated_deltas": run.deltas,
        "truncated_delta_names": run.delta_names,
        "truncated_backward": run.gradients,
        "truncated_carry": run.carries,
        # whether a gradient's direct share reads the rows _keep (the loss's own rows)
        "keeps": any(f"[{KEEP}]" in line.code for line in fast.backward_post),
        "truncated_keeps": any(f"[{KEEP}]" in line.code for line in run.gradients),
        "carries": [{"name": naming.carried_local(s.name), "dim": s.dim} for s in cell.states],
    }


def _work(derivation: Derivation, fast: Hoisted) -> dict[str, Any]:
    """The fast path's work arrays, allocated for a shape once and kept between calls: the forward
    pass's nodes, and without truncation the backward pass's deltas and local derivatives, (T + 1, B, n)
    each; their row views; the tuples of their steps' views the loops read; the (B, n) arrays the
    loops write (the carried shares, scratch); the names of those each call fills with zeros."""
    cell = derivation.cell
    last = cell.loss_mode == "last"
    arrays = [{"name": n.name, "dim": n.dim, "zeros": last and n.name in cell.outputs} for n in _nodes(cell)]
    views, needs = list(fast.forward_views), [fast.forward_needs]
    rows = [{"name": name, "size": size} for name, size in fast.forward_needs.scratch]
    stacked = [(k.name, k.members, k.dim) for k in fast.stacks]
    # a run of members one call activates: their columns of the stack, allocated like a member
    runs = [(k.name, name, first, count, k.dim) for k in fast.stacks for name, first, count in k.runs]
    arrays += [
        {"name": name, "dim": dim, "zeros": False, "run": (stack, first, count)}
        for stack, name, first, count, dim in runs
    ]
    if not derivation.truncate:
        arrays += [{"name": d["name"], "dim": d["dim"], "zeros": d["init"] == "zeros"} for d in fast.deltas]
        arrays += [{"name": d["name"], "dim": d["dim"], "zeros": False} for d in fast.locals]
        views += fast.backward_views
        stacked += [(k.delta_name, k.deltas, k.dim) for k in fast.stacks if k.deltas]
        needs.append(fast.backward_needs)
        rows += [{"name": naming.carried_local(s.name), "size": f'sizes["n_{s.dim}"]'} for s in cell.states]
        rows += [{"name": name, "size": size} for name, size in fast.backward_needs.scratch]
    rows = list({row["name"]: row for row in rows}.values())
    arrays, slices = _stacked(arrays, stacked)
    lives_in = dict(fast.aliases)  # written into another's array: allocated as that array, after it
    arrays = [a for a in arrays if a["name"] not in lives_in] + [
        {**a, "code": f"{lives_in[a['name']]}  # {a['name']}_t is written into these rows, and activated there"}
        for a in arrays
        if a["name"] in lives_in
    ]
    views = [replace(v, within=slices[v.array]) if v.array in slices else v for v in views]
    weights = [
        {
            "name": k.weights_name,
            "rows": f'{len(k.members)} * sizes["n_{k.dim}"]',
            "cols": f'sizes["n_{k.operand}"]',
            "of": ", ".join(k.weights),
        }
        for k in fast.stacks
    ]
    steps = list(dict.fromkeys(name for need in needs for name in need.steps))
    shapes: dict[str, tuple[str, ...]] = {w["name"]: (w["rows"], w["cols"]) for w in weights}
    shapes |= {p.name: tuple(f'sizes["n_{d}"]' for d in p.shape) for p in cell.params}
    fortran = list(dict.fromkeys(name for need in needs for name in need.fortran))
    rows = [{"name": r["name"], "shape": f"(B, {r['size']})", "view": ""} for r in rows]
    rows += [{"name": w["name"], "shape": f"({w['rows']}, {w['cols']})", "view": ""} for w in weights]
    # the Fortran-ordered copies: a C-ordered array of the transposed shape, seen through .T
    rows += [{"name": f"_{n}_F", "shape": f"({shapes[n][1]}, {shapes[n][0]})", "view": ".T"} for n in fortran]
    names = [a["name"] for a in arrays] + [view.name for view in views] + [row["name"] for row in rows]
    names += [naming.steps_name(name) for name in steps]
    if any(v.kind == "class" for v in cell.targets):
        names += ["_rows", "_batch_rows"]
    return {
        "work": arrays,
        "work_views": views,
        "work_rows": rows,
        "work_steps": steps,
        "work_names": _wrapped(names),
        "work_zeros": [a["name"] for a in arrays if a["zeros"]],
        "transposes": list(dict.fromkeys(name for need in needs for name in need.transposes)),
        "stacked_weights": weights,
        "fortran": fortran,
    }


def _stacked(arrays: list[dict[str, Any]], stacks: list[tuple[str, tuple[str, ...], str]]) -> tuple[list, dict]:
    """The work arrays with each stack (name, members, dim) one array, allocated before its members,
    which are slices of it side by side; and each member's slice (stack, columns)."""
    slices: dict[str, tuple[str, str]] = {}
    out: list[dict[str, Any]] = []
    for a in arrays:
        if "run" in a:
            name, first, count = a["run"]
            out.append({**a, "code": f"{name}[:, :, {_columns(first, _size(a['dim']), count)}]"})
            continue
        stack = next((k for k in stacks if a["name"] in k[1]), None)
        if stack is None:
            out.append({**a, "code": f'_empty((T + 1, B, sizes["n_{a["dim"]}"]), dtype)'})
            continue
        name, members, dim = stack
        if not any(b["name"] == name for b in out):
            out.append(
                {
                    "name": name,
                    "dim": dim,
                    "zeros": False,
                    "code": f'_empty((T + 1, B, {len(members)} * sizes["n_{dim}"]), dtype)',
                }
            )
        slices[a["name"]] = (name, _columns(members.index(a["name"]), f'sizes["n_{dim}"]'))
        out.append({**a, "code": f"{name}[:, :, {slices[a['name']][1]}]"})
    return out, slices


def _size(dim: str) -> str:
    return f'sizes["n_{dim}"]'


def _columns(position: int, size: str, count: int = 1) -> str:
    """The columns of ``count`` members from ``position`` of a stack: ``:n``, ``n:2 * n``, ``:3 * n``."""
    lo = "" if position == 0 else (size if position == 1 else f"{position} * {size}")
    end = position + count
    hi = size if end == 1 else f"{end} * {size}"
    return f"{lo}:{hi}"


def _wrapped(names: list[str], width: int = 100) -> list[str]:
    """``a, b, c`` broken into lines of at most ``width`` characters, each but the last ending in a comma."""
    lines, line = [], ""
    for name in names:
        if line and len(line) + len(name) + 2 > width:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {name}" if line else name
    return [*lines, line]


def _nodes(cell: Cell) -> list[Any]:
    return [cell.nodes[e.name] for e in cell.equations if e.name != cell.loss]


DEFINITION_LINES = ("def_forward", "def_jacobians", "def_terms")


def _by_definition(derivation: Derivation) -> dict[str, Any]:
    """The literal chain-rule sums for the derived T, where they are written (T <= the cell's limit)."""
    if not derivation.expanded:
        return {
            "step_inputs": [],
            "def_loss": "",
            "def_forward": (),
            "def_jacobians": (),
            "def_terms": (),
            "size_lines": [],
        }
    cell, printer = derivation.cell, ColumnPrinter()
    step_inputs = []
    for t in range(1, derivation.steps + 1):
        vectors = [*cell.inputs, *(cell.targets if t in cell.loss_steps(derivation.steps) else ())]
        step_inputs += [f"{printer.doprint(v.at(t))} = {naming.code_base(v.name)}[{t}]" for v in vectors]
    context: dict[str, Any] = {
        "step_inputs": step_inputs,
        "def_loss": " + ".join(printer.doprint(j) for j in _unrolled(derivation).losses),
        "def_forward": definition_forward(derivation),
        "def_jacobians": definition_jacobians(derivation),
        "def_terms": definition_terms(derivation),
    }
    code = "\n".join(
        [f"n_{d.dim}" for d in cell.delays]  # a delay's zeros at step 0 take its size
        + [line.code for group in ("def_forward", "def_jacobians") for line in context[group]]
    )
    code += "\n".join(line.code for block in context["def_terms"] for line in block.lines)
    sizes: dict[str, str] = {}
    for p in cell.params:
        for i, d in enumerate(p.shape):
            sizes.setdefault(d, f"n_{d} = {p.name}.shape[{i}]")
    lines = [sizes[d] for d in cell.dims if d in sizes]
    context["size_lines"] = [line for line in lines if re.search(rf"\b{line.split()[0]}\b", code)]
    return context


def _helpers(context: dict[str, Any]) -> dict[str, Any]:
    """The helper functions the printed code calls, each defined in the module only where it is."""
    fast = context["hoisted"]
    emitted = [*fast.forward_pre, *fast.forward_loop, *fast.forward_post, *fast.backward_pre]
    emitted += [*fast.backward_loop, *fast.carry, *fast.backward_post]
    emitted += [*context["truncated_deltas"], *context["truncated_backward"], *context["truncated_carry"]]
    emitted += [*context["def_forward"], *context["def_jacobians"]]
    code = "\n".join(line.code for line in emitted)
    return {
        "helpers": [op.helper_source() for op in HELPERS if f"{op.code}(" in code],
        "uses": [h for h in OPTIONAL_HELPERS if h + "(" in code],
    }


def contract(derivation: Derivation, command: str) -> dict[str, Any]:
    """What every target's module states alike: the cell, its equations, its parameters' names and
    shapes, the arguments (inputs, targets, initial states), the command that writes it again."""
    cell = derivation.cell
    return {
        "cell": cell,
        "steps": derivation.steps,
        "command": command,
        "dim_names": _py_tuple(tuple(f"n_{d}" for d in cell.dims)),
        "equations": [
            equation_text(sp.MatrixSymbol(naming.step_name(e.name, "t"), *e.shape), e.rhs) for e in cell.equations
        ],
        "param_names": _py_tuple(cell.param_names),
        "params": [
            {"name": p.name, "shape": _py_tuple(tuple(f"n_{d}" for d in p.shape)), "grad": naming.grad_local(p.name)}
            for p in cell.params
        ],
        "loss_last": cell.loss_mode == "last",
        **_arguments(cell),
    }


def module_context(derivation: Derivation, command: str) -> dict[str, Any]:
    """Everything ``templates/module.py.j2`` places, already printed."""
    cell = derivation.cell
    context: dict[str, Any] = {
        **contract(derivation, command),
        "by_definition": derivation.expanded,
        "expanded_max": derivation.expandable,
        "weight_names": _wrapped(list(cell.param_names)),
        "nodes": _nodes(cell),
        "outputs": cell.outputs,
        **_fast_path(derivation),
        **_by_definition(derivation),
    }
    return context | _helpers(context)
