"""Fused products: gates that add their own matrix times one operand share one product per step."""

import numpy as np
import pytest

from conftest import load_cell
from derive.derivation.pipeline import derive
from derive.emit.numpy.fast import hoisted
from derive.emit.outputs import module_source
from derive.spec.lexer import SpecError
from derive.spec.parser import parse
from derive.verify.report import load_module, random_problem
from derive.verify.selfcheck import self_check

TWO_WIDTHS = """\
cell widths "two gates of different widths read h"
param W[h, x], U[h, h], A[a, x], K[a, h], M[h, a], V[y, h]
input x[x]; state h[h] = 0; target l: class(y)
s = sigmoid(A x + K h[t-1])
h = tanh(W x + U h[t-1] + M s)
y = V h
J = cross_entropy(softmax(y), l)
"""


def test_the_lstm_gates_are_one_stack_forward_and_backward():
    (stack,) = hoisted(derive(load_cell("lstm"), 3)).stacks
    assert (stack.members, stack.weights, stack.dim, stack.operand) == (
        ("f", "i", "o", "g"),
        ("U_f", "U_i", "U_o", "U_g"),
        "h",
        "h",
    )
    assert stack.deltas == ("df_pre", "di_pre", "do_pre", "dg_pre")


def test_the_gru_stacks_its_reset_and_update_gates_not_the_candidate():
    (stack,) = hoisted(derive(load_cell("gru"), 3)).stacks
    assert stack.members == ("r", "u")  # n reads U_n (r * h[t-1]): another operand


def test_gates_of_different_widths_are_not_stacked():
    derivation = derive(parse(TWO_WIDTHS), 3)
    assert hoisted(derivation).stacks == ()
    self_check(module_source(derivation), derivation.cell)


def test_truncated_modules_fuse_the_forward_product_only():
    (stack,) = hoisted(derive(load_cell("lstm"), 3, 2)).stacks
    assert stack.deltas == ()
    assert "W_stack1" in module_source(derive(load_cell("lstm"), 3, 2))


def test_one_sequence_and_a_batch_agree_with_the_unbatched_path():
    """B = 1 multiplies by the parameters as they are, B > 1 by their Fortran-ordered copies."""
    module = load_module(module_source(derive(load_cell("lstm"), 3)), "lstm_fused")
    params, xs, labels, h0, c0 = random_problem(module, 4, (3, 5, 4), seed=2, batch=3)
    loss, grads = module.loss_and_gradients(params, xs, labels, h0, c0)
    for b in range(3):
        loss_b, grads_b = module.loss_and_gradients(params, xs[:, b], labels[:, b], h0[b], c0[b])
        for name in module.PARAMS:
            grads[name] = grads[name] - grads_b[name]
        loss -= loss_b
    assert abs(loss) < 1e-12 and all(np.abs(grads[name]).max() < 1e-12 for name in module.PARAMS)


RELU_OF_A_NODE = """\
cell relu_node "a pre-activation the backward pass reads: relu's slope is step(z)"
param W[h, x], U[h, h], V[y, h]
input x[x]; state h[h] = 0; target l: class(y)
z = W x + U h[t-1]
h = relu(z)
y = V h
J = cross_entropy(softmax(y), l)
"""


def test_a_pre_activation_nothing_else_reads_is_written_into_its_activation():
    assert hoisted(derive(load_cell("elman"), 3)).aliases == (("z", "h"),)  # tanh's slope reads h alone
    assert "    z = h  # z_t is written into these rows" in module_source(derive(load_cell("elman"), 3))
    assert hoisted(derive(load_cell("elman"), 3, 2)).aliases == ()  # truncated: the runs read their own


def test_a_pre_activation_the_backward_pass_reads_keeps_its_array():
    derivation = derive(parse(RELU_OF_A_NODE), 3)
    assert hoisted(derivation).aliases == ()
    self_check(module_source(derivation), derivation.cell)


def test_neighbouring_gates_with_one_function_are_activated_by_one_call():
    (stack,) = hoisted(derive(load_cell("lstm"), 3)).stacks
    assert stack.runs == (("stack1_0_3", 0, 3),)  # sigmoid of f, i, o; g is tanh
    loop = [line.code for line in hoisted(derive(load_cell("lstm"), 3)).forward_loop]
    assert "_sigmoid(stack1_0_3_steps[t], out=stack1_0_3_steps[t])" in loop
    assert "np.tanh(g_steps[t], out=g_steps[t])" in loop
    assert not any(line.startswith("_sigmoid(f_steps[t]") for line in loop)
    (gru,) = hoisted(derive(load_cell("gru"), 3)).stacks
    assert gru.runs == (("stack1_0_2", 0, 2),)  # r and u


NAMED = """\
cell named "a node named {name}"
param W[h, x], U[h, h], V[y, h]
input x[x]; state h[h] = 0; target label: class(y)
{name} = tanh(W x + U h[t-1])
h = {name} * h[t-1] + {name}
y = V h
J = cross_entropy(softmax(y), label)
"""


@pytest.mark.parametrize("name", ["take", "give", "rows", "empty", "fortran", "scratch_n_h", "U_T", "U_F", "prepare"])
def test_node_names_that_meet_the_modules_own_names_still_verify(name):
    """The loops' step tuples are h_steps, never _h, which could be a helper (_take) or a transpose (_U_T)."""
    cell = parse(NAMED.format(name=name))
    self_check(module_source(derive(cell, 3)), cell)


@pytest.mark.parametrize("name", ["key", "work", "weights", "h_steps", "stack1", "W_stack2"])
def test_the_modules_own_locals_are_reserved(name):
    with pytest.raises(SpecError, match=rf"'{name}' is reserved for the generated code"):
        parse(NAMED.format(name=name))
