"""Probe: the stable-loss claims in both NumPy paths, at logits of about +-2000.
usage: PYTHONPATH=/work/wt-review python probes/stability.py CELL..."""
import sys, warnings
from pathlib import Path
import numpy as np
from derive.derivation.pipeline import derive
from derive.emit.outputs import module_source
from derive.spec.parser import read
from derive.verify.report import load_module

for path in sys.argv[1:]:
    name = Path(path).stem
    m = load_module(module_source(derive(read(Path(path)), 2)), f"{name}_stab")
    rng = np.random.default_rng(3)
    params = m.init_params(3, 4, 5, seed=1)
    params["V"] = params["V"] * 2000.0 / np.abs(params["V"]).sum(axis=1, keepdims=True)
    xs = rng.standard_normal((2, 3))
    if "class" in Path(path).read_text():
        tg = rng.integers(0, 5, 2)
    else:
        tg = rng.dirichlet(np.ones(5), size=2) if "softmax" in Path(path).read_text() else rng.uniform(0, 1, (2, 5))
    if "last step" in Path(path).read_text():
        tg = tg[-1]
    out = {}
    for fn in ("loss_and_gradients", "gradients_by_definition"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                loss, g = getattr(m, fn)(params, xs, tg)
            except Exception as e:
                print(f"{name:22s} {fn:24s} raised {type(e).__name__}: {e}")
                continue
        finite = np.isfinite(loss) and all(np.isfinite(v).all() for v in g.values())
        out[fn] = (loss, g)
        print(f"{name:22s} {fn:24s} loss={loss:.6g} finite={finite}")
    if len(out) == 2:
        (l1, g1), (l2, g2) = out.values()
        d = max(np.abs(g1[k] - g2[k]).max() / max(np.abs(g1[k]).max(), 1e-8) for k in g1)
        print(f"{name:22s} fast vs by-definition: loss diff {abs(l1 - l2):.3g}, grad rel diff {d:.3g}")
