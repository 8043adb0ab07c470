import numpy as np

def sig(z): return 1 / (1 + np.exp(-z))

def lossFun(inputs, targets, hprev, cprev, Wf, Uf, bf, Wi, Ui, bi, Wo, Uo, bo, Wg, Ug, bg, Wy, by):
    V, H = Wy.shape[0], Uf.shape[0]
    xs, hs, cs, f, i, o, g, ps = {}, {-1: hprev.copy()}, {-1: cprev.copy()}, {}, {}, {}, {}, {}
    loss = 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((V, 1)); xs[t][inputs[t]] = 1
        f[t] = sig(Wf @ xs[t] + Uf @ hs[t-1] + bf)
        i[t] = sig(Wi @ xs[t] + Ui @ hs[t-1] + bi)
        o[t] = sig(Wo @ xs[t] + Uo @ hs[t-1] + bo)
        g[t] = np.tanh(Wg @ xs[t] + Ug @ hs[t-1] + bg)
        cs[t] = f[t] * cs[t-1] + i[t] * g[t]
        hs[t] = o[t] * np.tanh(cs[t])
        y = Wy @ hs[t] + by
        ps[t] = np.exp(y) / np.exp(y).sum()
        loss += -np.log(ps[t][targets[t], 0])
    d = {k: np.zeros_like(v) for k, v in dict(Wf=Wf, Uf=Uf, bf=bf, Wi=Wi, Ui=Ui, bi=bi, Wo=Wo, Uo=Uo, bo=bo, Wg=Wg, Ug=Ug, bg=bg, Wy=Wy, by=by).items()}
    dhn, dcn = np.zeros((H, 1)), np.zeros((H, 1))
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy(); dy[targets[t]] -= 1
        d["Wy"] += dy @ hs[t].T; d["by"] += dy
        dh = Wy.T @ dy + dhn
        tc = np.tanh(cs[t])
        do = dh * tc * o[t] * (1 - o[t])
        dc = dh * o[t] * (1 - tc ** 2) + dcn
        df = dc * cs[t-1] * f[t] * (1 - f[t])
        di = dc * g[t] * i[t] * (1 - i[t])
        dg = dc * i[t] * (1 - g[t] ** 2)
        dhn = np.zeros((H, 1))
        for n, dz, U in (("f", df, Uf), ("i", di, Ui), ("o", do, Uo), ("g", dg, Ug)):
            d["W" + n] += dz @ xs[t].T; d["U" + n] += dz @ hs[t-1].T; d["b" + n] += dz
            dhn += U.T @ dz
        dcn = dc * f[t]
    # returned in the order i, f, o, g (not the order of the arguments)
    order = ["Wi", "Ui", "bi", "Wf", "Uf", "bf", "Wo", "Uo", "bo", "Wg", "Ug", "bg", "Wy", "by"]
    return (loss, *[d[k] for k in order], hs[len(inputs) - 1], cs[len(inputs) - 1])
