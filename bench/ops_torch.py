#!/usr/bin/python3
"""PyTorch reference for bench/ops.c: the same op instances (bench/shapes.txt), timing protocol, FLOP
formulas and output line format, with impl=torch.

    /usr/bin/python3 bench/ops_torch.py SHAPES THREADS [--ops=OP,OP,...]

Each op is what a PyTorch SPOS supernet runs for it in training: tensors with requires_grad, so the forward
builds the autograd graph; the backward is torch.autograd.grad on that graph with a fixed upstream
gradient (retain_graph, so that only the backward is timed). Weights are contiguous tensors: a supernet
that slices max-width weights would pay a copy on top of this, so torch is, if anything, favoured.
See bench/ops.c for the protocol and the formulas.
"""
import math
import sys
import time

import torch
import torch.nn.functional as F

WARM_S = 0.03
TARGET_S = 0.2
MIN_SAMPLE_S = 1e-3
MIN_SAMPLES = 5
MAX_SAMPLES = 201
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
XENT_SMOOTHING = 0.1
FLAGS = ("dx", "relu")  # the only keys that may be 0


def measure(fn):
    """Median seconds per call of fn(), by the protocol of bench/ops.c."""
    fn()
    warm = 0
    t0 = time.perf_counter()
    while True:
        fn()
        warm += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= WARM_S:
            break
    est = elapsed / warm
    inner = int(MIN_SAMPLE_S / est) + 1 if est < MIN_SAMPLE_S else 1
    samples = min(max(int(TARGET_S / (est * inner)), MIN_SAMPLES), MAX_SAMPLES) | 1
    t = []
    for _ in range(samples):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        t.append((time.perf_counter() - start) / inner)
    t.sort()
    return t[samples // 2]


def rand(*shape, grad=False):
    return (torch.rand(*shape) * 2 - 1).requires_grad_(grad)


def out_size(size, k, stride):
    return (size + 2 * (k // 2) - k) // stride + 1


def spatial(hw):
    """(h, w) of an hw-pixel map: square when hw is a square (every map in the search spaces)."""
    s = math.isqrt(hw)
    return (s, s) if s * s == hw else (hw, 1)


# Each setup takes the line's keys and returns (forward, tensors to differentiate, fwd_flop, bwd_flop);
# forward() returns the output whose gradient is taken (for xent the mean loss, upstream gradient 1).


def conv(p):
    n, cin, cout, h, w, k, stride, dx = (p[q] for q in ("n", "cin", "cout", "h", "w", "k", "stride", "dx"))
    x, wt = rand(n, cin, h, w, grad=bool(dx)), rand(cout, cin, k, k, grad=True)
    flop = 2.0 * n * cout * cin * k * k * out_size(h, k, stride) * out_size(w, k, stride)
    grads = [x, wt] if dx else [wt]  # the stem needs no input gradient
    return (lambda: F.conv2d(x, wt, None, stride, k // 2)), grads, flop, flop * len(grads)


def pointwise(p):
    # ldw (the row length of the max-width weight in C) has no counterpart: the weight is contiguous
    n, cin, cout, hw = p["n"], p["cin"], p["cout"], p["hw"]
    x, wt = rand(n, cin, *spatial(hw), grad=True), rand(cout, cin, 1, 1, grad=True)
    flop = 2.0 * n * cout * cin * hw
    return (lambda: F.conv2d(x, wt)), [x, wt], flop, 2 * flop


def depthwise(p):
    n, c, h, w, k, stride = (p[q] for q in ("n", "c", "h", "w", "k", "stride"))
    x, wt = rand(n, c, h, w, grad=True), rand(c, 1, k, k, grad=True)
    flop = 2.0 * n * c * k * k * out_size(h, k, stride) * out_size(w, k, stride)
    return (lambda: F.conv2d(x, wt, None, stride, k // 2, 1, c)), [x, wt], flop, 2 * flop


def bn(p):
    n, c, hw, relu = p["n"], p["c"], p["hw"], p["relu"] != 0
    x = rand(n, c, *spatial(hw), grad=True)
    rm, rv = torch.zeros(c), torch.ones(c)

    def fwd():
        y = F.batch_norm(x, rm, rv, None, None, True, BN_MOMENTUM, BN_EPS)
        return F.relu(y, inplace=True) if relu else y

    count = float(n * c * hw)
    return fwd, [x], (4 + relu) * count, (8 + relu) * count


def avgpool(p):
    n, c, hw = p["n"], p["c"], p["hw"]
    x = rand(n, c, *spatial(hw), grad=True)
    return (lambda: F.adaptive_avg_pool2d(x, 1)), [x], float(n * c * hw), float(n * c * hw)


def linear(p):
    n, fin, fout = p["n"], p["in"], p["out"]
    x, wt, b = rand(n, fin, grad=True), rand(fout, fin, grad=True), rand(fout, grad=True)
    mm = float(n * fin * fout)
    return (lambda: F.linear(x, wt, b)), [x, wt, b], 2 * mm + n * fout, 4 * mm + n * fout


def xent(p):
    n, k = p["n"], p["k"]
    logits, labels = rand(n, k, grad=True), torch.randint(0, k, (n,))
    def loss():
        return F.cross_entropy(logits, labels, label_smoothing=XENT_SMOOTHING)

    return loss, [logits], 4.0 * n * k, 2.0 * n * k


# op: (setup, required keys, optional keys with their defaults); the same keys as the table in ops.c.
OPS = {
    "conv": (conv, "n cin cout h w k stride", {"dx": 1}),
    "pointwise": (pointwise, "n cin cout hw", {"ldw": None}),
    "depthwise": (depthwise, "n c h w k stride", {}),
    "bn": (bn, "n c hw relu", {}),
    "avgpool": (avgpool, "n c hw", {}),
    "linear": (linear, "n in out", {}),
    "xent": (xent, "n k", {}),
}


def read_shapes(path):
    """[(space, id, op, [(key, value)])] of every instance line, all checked before anything runs; exits
    with FILE:LINE: problem on bad input."""
    out, seen = [], set()
    with open(path) as f:
        for lineno, text in enumerate(f, 1):
            tok = text.split()
            if not tok or tok[0].startswith("#"):
                continue

            def bad(why):
                sys.exit(f"{path}:{lineno}: {why}")

            if len(tok) < 4:
                bad(f"expected 'SPACE ID OP KEY=VALUE ...', got {len(tok)} fields")
            space, ident, op = tok[:3]
            kv = []
            for t in tok[3:]:
                key, eq, val = t.partition("=")
                lo = 0 if key in FLAGS else 1
                if not eq or not key or not val.isdigit() or not lo <= int(val) <= 1 << 30:
                    bad(f"'{t}' is not KEY=VALUE with an integer in [{lo}, 2^30]")
                kv.append((key, int(val)))
            if op not in OPS:
                bad(f"unknown op '{op}' (known: {' '.join(OPS)})")
            _, required, optional = OPS[op]
            keys = dict(kv)
            for k in required.split():
                if k not in keys:
                    bad(f"op '{op}' needs key '{k}' (keys: {required}; optional: {' '.join(optional)})")
            for k in keys:
                if k not in required.split() and k not in optional:
                    bad(f"op '{op}' has no key '{k}' (keys: {required}; optional: {' '.join(optional)})")
            # the op-specific checks of ops.c
            if op == "pointwise" and keys.get("ldw", keys["cin"]) < keys["cin"]:
                bad(f"ldw {keys['ldw']} < cin {keys['cin']}: the weight's rows must hold the input width")
            if op == "depthwise" and (keys["k"] not in (3, 5, 7) or keys["stride"] not in (1, 2)):
                bad(f"depthwise needs k in {{3, 5, 7}} and stride in {{1, 2}} (got k={keys['k']} "
                    f"stride={keys['stride']})")
            if (space, ident) in seen:
                bad(f"id '{ident}' is already used in space '{space}'")
            seen.add((space, ident))
            out.append((space, ident, op, kv))
    return out


def main():
    args = sys.argv[1:]
    only = None
    if len(args) == 3 and args[2].startswith("--ops="):
        only = set(args[2][len("--ops="):].split(","))
        args = args[:2]
    if len(args) != 2 or not args[1].isdigit() or int(args[1]) < 1:
        sys.exit("usage: ops_torch.py SHAPES THREADS [--ops=OP,OP,...]")
    path, threads = args[0], int(args[1])
    lines = read_shapes(path)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = torch.__config__.show().splitlines()
    cap = next((l.split(":", 1)[1].strip() for l in config if "CPU capability" in l), "?")
    print(f"# torch: {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {cap}, "
          f"mkldnn {torch.backends.mkldnn.is_available()}", flush=True)
    for space, ident, op, kv in lines:
        if only is not None and op not in only:
            continue
        setup, _, optional = OPS[op]
        fwd, inputs, flop_fwd, flop_bwd = setup({**optional, **dict(kv)})
        t_fwd = measure(fwd)
        y = fwd()
        gy = None if y.dim() == 0 else torch.rand_like(y) * 2 - 1
        t_bwd = measure(lambda: torch.autograd.grad(y, inputs, gy, retain_graph=True))
        shape = ",".join(f"{k}={v}" for k, v in kv)
        print(f"op={op} space={space} id={ident} shape={shape} impl=torch threads={threads} "
              f"fwd_ms={t_fwd * 1e3:.4f} bwd_ms={t_bwd * 1e3:.4f} "
              f"fwd_flop={flop_fwd:.0f} bwd_flop={flop_bwd:.0f} "
              f"fwd_gflops={flop_fwd / t_fwd * 1e-9:.2f} bwd_gflops={flop_bwd / t_bwd * 1e-9:.2f}", flush=True)


if __name__ == "__main__":
    main()
