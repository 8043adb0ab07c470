"""The work arrays a generated module keeps between calls: one set per call at a time (threads),
at most ``_KEEP`` sets, dropped by ``release_workspaces``, never returned to the caller."""

import threading

import numpy as np

from conftest import load_cell
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.verify.report import distinct_sizes, load_module, random_problem


def lstm_module():
    return load_module(module_source(derive(load_cell("lstm"), 3)), "lstm_workspace")


def kept_sets(module) -> int:
    return sum(map(len, module._kept.values()))


def test_calls_in_threads_at_once_each_get_their_own_work_arrays():
    module = lstm_module()
    sizes = distinct_sizes(module, 4)
    problems = [random_problem(module, 5, sizes, seed, 3) for seed in range(8)]
    want = [module.loss_and_gradients(*p) for p in problems]
    got = [None] * len(problems)
    start = threading.Barrier(len(problems))

    def run(i):
        start.wait()
        for _ in range(20):
            got[i] = module.loss_and_gradients(*problems[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(problems))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for (want_loss, want_grads), (loss, grads) in zip(want, got):
        assert loss == want_loss
        assert all(np.array_equal(grads[k], want_grads[k]) for k in want_grads)
    assert 1 <= kept_sets(module) <= module._KEEP


def test_at_most_keep_sets_are_kept_and_release_drops_them():
    module = lstm_module()
    sizes = distinct_sizes(module, 4)
    for steps in range(1, module._KEEP + 3):  # a shape of its own each
        module.loss_and_gradients(*random_problem(module, steps, sizes, 0, 2))
    assert kept_sets(module) == module._KEEP
    kept_steps = sorted(key[0] for key in module._kept)
    assert kept_steps == list(range(3, module._KEEP + 3))  # the least recently used went first
    module.release_workspaces()
    assert kept_sets(module) == 0


def test_returned_gradients_are_not_the_work_arrays():
    module = lstm_module()
    sizes = distinct_sizes(module, 4)
    first = module.loss_and_gradients(*random_problem(module, 4, sizes, 0, 2))
    kept = {k: v.copy() for k, v in first[1].items()}
    module.loss_and_gradients(*random_problem(module, 4, sizes, 1, 2))
    assert all(np.array_equal(first[1][k], kept[k]) for k in kept)


def test_kept_bytes_are_bounded_but_the_last_calls_arrays_are_kept():
    module = lstm_module()
    sizes = distinct_sizes(module, 4)
    module.loss_and_gradients(*random_problem(module, 3, sizes, 0, 2))
    one = sum(n for entries in module._kept.values() for _, n in entries)
    module._KEEP_BYTES = 2 * one  # room for the T = 5 set besides the last, not for T = 4 and 5 both
    for steps in (4, 5, 6):
        module.loss_and_gradients(*random_problem(module, steps, sizes, 0, 2))
    assert sorted(key[0] for key in module._kept) == [5, 6]
    module._KEEP_BYTES = 0  # none besides the last: a call of its shape still finds its arrays
    module.loss_and_gradients(*random_problem(module, 7, sizes, 0, 2))
    assert [key[0] for key in module._kept] == [7]


def test_big_endian_arguments_give_native_results():
    module = lstm_module()
    params, xs, labels, h0, c0 = random_problem(module, 3, distinct_sizes(module, 4), 0, 2)
    want_loss, want = module.loss_and_gradients(params, xs, labels, h0, c0)
    swapped = {k: v.astype(">f8") for k, v in params.items()}
    loss, grads = module.loss_and_gradients(swapped, xs.astype(">f8"), labels.astype(">i4"), h0.astype(">f8"), c0)
    assert loss == want_loss and all(np.array_equal(grads[k], want[k]) for k in want)
    assert all(g.dtype == np.float64 and g.dtype.isnative for g in grads.values())
