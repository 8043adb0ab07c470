import numpy as np

def _fwd(x, h0, Wx, Wh, b, start_zero=False, bug=False):
    N, T, D = x.shape
    H = Wh.shape[0]
    h = np.zeros((N, T, H))
    prev = np.zeros((N, H)) if start_zero else h0
    for t in range(T):
        z = x[:, t] @ Wx + prev @ Wh + b
        prev = np.tanh(z) if not bug else np.tanh(z) + 1e-3 * z
        h[:, t] = prev
    return h

def _bwd(dh, x, h0, h, Wx, Wh):
    N, T, H = dh.shape
    dWx, dWh, db = np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(H)
    dx = np.zeros_like(x)
    dnext = np.zeros((N, H))
    for t in reversed(range(T)):
        dz = (dh[:, t] + dnext) * (1 - h[:, t] ** 2)
        prev = h[:, t - 1] if t > 0 else h0
        dWx += x[:, t].T @ dz; dWh += prev.T @ dz; db += dz.sum(0)
        dx[:, t] = dz @ Wx.T
        dnext = dz @ Wh.T
    return dx, dnext, dWx, dWh, db

# L1: forward ignores h0 (starts from zero) but the backward's t=0 term uses the h0 it was given
def fwd_zero(x, h0, Wx, Wh, b):
    h = _fwd(x, h0, Wx, Wh, b, start_zero=True)
    return h, (x, h0, h, Wx, Wh)

def bwd_zero(dh, cache):
    return _bwd(dh, *cache)

# L2: a small forward bug: which layout is reported?
def fwd_bug(x, h0, Wx, Wh, b):
    h = _fwd(x, h0, Wx, Wh, b, bug=True)
    return h, (x, h0, h, Wx, Wh)

def bwd_bug(dh, cache):
    return _bwd(dh, *cache)

# L3: backward returns a dict, and no dh0
def fwd_ok(x, h0, Wx, Wh, b):
    h = _fwd(x, h0, Wx, Wh, b)
    return h, (x, h0, h, Wx, Wh)

def bwd_dict(dh, cache):
    dx, dh0, dWx, dWh, db = _bwd(dh, *cache)
    return {"dWh": dWh, "dWx": dWx, "db": db, "dx": dx, "dh0": dh0}

def bwd_no_dh0(dh, cache):
    dx, dh0, dWx, dWh, db = _bwd(dh, *cache)
    return dx, dWx, dWh, db

# L3b: dh0 wrong (forgets the carried part) 
def bwd_bad_dh0(dh, cache):
    dx, dh0, dWx, dWh, db = _bwd(dh, *cache)
    return dx, 0 * dh0, dWx, dWh, db

# L3c: dx wrong only
def bwd_bad_dx(dh, cache):
    dx, dh0, dWx, dWh, db = _bwd(dh, *cache)
    return 2 * dx, dh0, dWx, dWh, db
