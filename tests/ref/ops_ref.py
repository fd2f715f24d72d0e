"""PyTorch reference for the backend operators (tests/test_torch_ops.c).

    /usr/bin/python3 tests/ref/ops_ref.py OUT.h5

Inputs are float32 draws from a seeded numpy Generator; every reference is
computed by torch in float64 from those same float32 values and stored as
float32, so the only error left in a comparison is the C operator's own
float32 rounding. One HDF5 group per case, named OP_NN, with:
  attribute `op` (str) and int/float attributes for the shape parameters;
  datasets for the inputs (x, w, b, gamma, ..., dy: a random upstream
  gradient) and the expected outputs (y, dx, dw, ...).
Max-width tensors (pointwise and depthwise weights, BN parameters and running
statistics, SGD buffers) are stored whole; the expected gradients are zero and
the expected statistics and parameters unchanged outside the slice an
operator uses, and the test checks those elements for exact equality.
"""
import collections
import math
import sys
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240611
# Hyperparameters are rounded to float32 before torch sees them: the C side
# holds them in float fields, and both must use the same value.
BN_EPS = float(np.float32(1e-5))
BN_MOMENTUM = float(np.float32(0.1))
SGD_MOMENTUM = float(np.float32(0.9))
SGD_WD = float(np.float32(5e-4))

# (n, cin, h, w, cout, kh, kw, stride, pad, groups, bias, need_dx)
CONV2D = [
    (2, 3, 17, 15, 16, 3, 3, 2, 1, 1, 1, 0),  # RGB stem: no dx needed
    (1, 1, 28, 28, 8, 3, 3, 1, 1, 1, 0, 1),  # Fashion-MNIST stem, batch 1
    (3, 3, 9, 11, 5, 3, 3, 1, 1, 1, 1, 1),
    (2, 1, 13, 13, 4, 3, 3, 2, 1, 1, 0, 1),
    (2, 8, 10, 9, 12, 3, 3, 1, 1, 4, 1, 1),  # grouped
    (2, 6, 11, 7, 6, 3, 3, 2, 1, 2, 0, 1),  # grouped, stride 2
    (1, 4, 9, 9, 4, 5, 5, 2, 2, 4, 1, 1),  # depthwise as groups == cin
    (2, 4, 8, 8, 6, 1, 1, 1, 0, 1, 1, 1),  # 1x1
    (1, 2, 6, 7, 3, 3, 1, 1, 0, 1, 1, 1),  # non-square kernel
]

# (n, cin, cout, hw, cin_max, cout_max)
POINTWISE = [
    (2, 16, 24, 49, 32, 48),
    (1, 7, 5, 9, 7, 5),
    (3, 12, 20, 15, 40, 20),
    (2, 24, 24, 196, 24, 48),
    (4, 48, 32, 1, 64, 64),
]

# (n, c, c_max, h, w, k, stride)
DEPTHWISE = [
    (2, 8, 12, 9, 9, 3, 1),
    (2, 6, 6, 10, 11, 3, 2),
    (1, 5, 9, 7, 8, 5, 1),
    (2, 4, 8, 9, 9, 5, 2),
    (2, 3, 6, 11, 10, 7, 1),
    (1, 8, 8, 14, 13, 7, 2),
    (2, 4, 6, 3, 3, 7, 1),  # kernel larger than the image
    (1, 2, 2, 2, 2, 5, 2),
]

# (n, c, c_max, hw, affine, relu)
BN_TRAIN = [
    (4, 8, 16, 25, 0, 0),
    (2, 6, 6, 49, 1, 0),
    (1, 5, 10, 9, 1, 1),
    (3, 7, 7, 1, 0, 1),
    (2, 16, 32, 64, 1, 1),
    (8, 4, 4, 1, 1, 0),
]

# (n, c, c_max, hw, affine, relu, inplace)
BN_INFER = [
    (2, 8, 16, 25, 1, 0, 0),
    (1, 5, 5, 9, 0, 1, 1),
    (3, 6, 12, 7, 1, 1, 0),
]

RELU = [(1000, 0), (1, 0), (37, 1), (4097, 0)]  # (count, inplace)
SPLIT = [(2, 8, 9), (1, 2, 1), (3, 14, 25), (2, 48, 49)]  # (n, c, hw)
CONCAT = [(2, 4, 6, 9), (1, 1, 1, 1), (3, 12, 12, 49), (2, 7, 3, 10)]
AVGPOOL = [(2, 8, 49), (1, 1, 1), (3, 16, 49), (4, 10, 13)]  # (n, c, hw)
LINEAR = [(4, 32, 10, 1), (1, 7, 3, 0), (5, 64, 1000, 1), (3, 17, 9, 0)]
# (n, k, smoothing, logit scale)
XENT = [(8, 10, 0.0, 1.0), (8, 10, 0.1, 1.0), (1, 5, 0.1, 1.0),
        (5, 1000, 0.1, 2.0), (16, 10, 0.0, 30.0), (3, 3, 0.1, 1.0)]
ACCURACY = [(16, 10, 0), (5, 1000, 0), (1, 10, 0), (7, 4, 0), (12, 10, 1)]

# SGD: buffer size, regions (offset, rows, cols, ld, weight decay), nesterov,
# learning rate per step.
SGD = [
    (96, [(0, 8, 12, 12, SGD_WD)], 0, [0.1, 0.1, 0.1]),
    (96, [(0, 8, 12, 12, SGD_WD)], 1, [0.1, 0.1, 0.1]),
    # A 5x7 slice of an 8x12 weight plus 10 of 16 bias entries (no decay).
    (112, [(0, 5, 7, 12, SGD_WD), (96, 1, 10, 16, 0.0)], 1,
     [0.05, 0.04, 0.03]),
    (40, [(3, 1, 30, 30, 0.0)], 0, [0.2, 0.15, 0.1]),
]


class RefFile:
    """Numbered groups in one HDF5 file."""

    def __init__(self, h5):
        self.h5 = h5
        self.count = collections.Counter()

    def case(self, op, **attrs):
        g = self.h5.create_group(f"{op}_{self.count[op]:02d}")
        self.count[op] += 1
        g.attrs["op"] = op
        for key, value in attrs.items():
            g.attrs[key] = value
        return g


def store(g, **arrays):
    """Integer arrays as int32, everything else as float32."""
    for name, a in arrays.items():
        if isinstance(a, torch.Tensor):
            a = a.detach().numpy()
        a = np.asarray(a)
        dtype = np.int32 if a.dtype.kind in "iub" else np.float32
        g.create_dataset(name, data=np.ascontiguousarray(a, dtype=dtype))


def randn(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=np.float32) *
            np.float32(scale))


def leaf(a):
    """A float64 tensor holding exactly the float32 values of a."""
    return torch.from_numpy(np.asarray(a, dtype=np.float64)).requires_grad_()


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def conv2d(out, rng):
    for (n, cin, h, w, cout, kh, kw, stride, pad, groups, bias,
         need_dx) in CONV2D:
        x = randn(rng, n, cin, h, w)
        wt = randn(rng, cout, cin // groups, kh, kw,
                   scale=1 / math.sqrt(cin // groups * kh * kw))
        b = randn(rng, cout, scale=0.1)
        xt, wtt, bt = leaf(x), leaf(wt), leaf(b)
        y = F.conv2d(xt, wtt, bt if bias else None, stride=stride,
                     padding=pad, groups=groups)
        dy = randn(rng, *y.shape)
        y.backward(t64(dy))
        g = out.case("conv2d", n=n, cin=cin, h=h, w=w, cout=cout, kh=kh,
                     kw=kw, stride=stride, pad=pad, groups=groups,
                     bias=bias, need_dx=need_dx)
        store(g, x=x, w=wt, y=y, dy=dy, dw=wtt.grad)
        if bias:
            store(g, b=b, db=bt.grad)
        if need_dx:
            store(g, dx=xt.grad)


def pointwise(out, rng):
    for n, cin, cout, hw, cin_max, cout_max in POINTWISE:
        x = randn(rng, n, cin, hw)
        wt = randn(rng, cout_max, cin_max, scale=1 / math.sqrt(cin))
        xt, wtt = leaf(x), leaf(wt)
        y = torch.einsum("oi,nip->nop", wtt[:cout, :cin], xt)
        dy = randn(rng, *y.shape)
        y.backward(t64(dy))
        g = out.case("pointwise", n=n, cin=cin, cout=cout, hw=hw,
                     ldw=cin_max, cout_max=cout_max)
        store(g, x=x, w=wt, y=y, dy=dy, dx=xt.grad, dw=wtt.grad)


def depthwise(out, rng):
    for n, c, c_max, h, w, k, stride in DEPTHWISE:
        x = randn(rng, n, c, h, w)
        wt = randn(rng, c_max, k, k, scale=1 / k)
        xt, wtt = leaf(x), leaf(wt)
        y = F.conv2d(xt, wtt[:c].unsqueeze(1), stride=stride,
                     padding=k // 2, groups=c)
        dy = randn(rng, *y.shape)
        y.backward(t64(dy))
        g = out.case("depthwise", n=n, c=c, c_max=c_max, h=h, w=w, k=k,
                     stride=stride)
        store(g, x=x, w=wt, y=y, dy=dy, dx=xt.grad, dw=wtt.grad)


def bn_input(rng, n, c, hw):
    """Per-channel shifted and scaled activations, as BN sees them."""
    shift = rng.uniform(-1, 1, (1, c, 1)).astype(np.float32)
    scale = rng.uniform(0.5, 2, (1, c, 1)).astype(np.float32)
    return randn(rng, n, c, hw) * scale + shift


def bn_params(rng, c_max):
    gamma = 1 + randn(rng, c_max, scale=0.2)
    beta = randn(rng, c_max, scale=0.2)
    running_mean = randn(rng, c_max, scale=0.3)
    running_var = rng.uniform(0.5, 1.5, c_max).astype(np.float32)
    return gamma, beta, running_mean, running_var


def bn_train(out, rng):
    for n, c, c_max, hw, affine, relu in BN_TRAIN:
        gamma, beta, rmean, rvar = bn_params(rng, c_max)
        while True:
            x = bn_input(rng, n, c, hw)
            xt, gt, bt = leaf(x), leaf(gamma), leaf(beta)
            rm, rv = t64(rmean[:c]).clone(), t64(rvar[:c]).clone()
            z = F.batch_norm(xt, rm, rv, gt[:c] if affine else None,
                             bt[:c] if affine else None, training=True,
                             momentum=BN_MOMENTUM, eps=BN_EPS)
            # The C backward masks the ReLU with its own float32 output;
            # keep every pre-activation clear of zero so the masks agree.
            if not relu or z.detach().abs().min() > 1e-3:
                break
        y = F.relu(z) if relu else z
        dy = randn(rng, *y.shape)
        y.backward(t64(dy))
        x64 = t64(x)
        mean = x64.mean((0, 2))
        invstd = 1 / torch.sqrt(x64.var((0, 2), unbiased=False) + BN_EPS)
        rmean_out, rvar_out = rmean.copy(), rvar.copy()
        rmean_out[:c], rvar_out[:c] = rm.numpy(), rv.numpy()
        g = out.case("bn_train", n=n, c=c, c_max=c_max, hw=hw,
                     affine=affine, relu=relu, eps=BN_EPS,
                     momentum=BN_MOMENTUM)
        store(g, x=x, running_mean=rmean, running_var=rvar, dy=dy, y=y,
              dx=xt.grad, save_mean=mean, save_invstd=invstd,
              running_mean_out=rmean_out, running_var_out=rvar_out)
        if affine:
            store(g, gamma=gamma, beta=beta, dgamma=gt.grad, dbeta=bt.grad)


def bn_infer(out, rng):
    for n, c, c_max, hw, affine, relu, inplace in BN_INFER:
        gamma, beta, rmean, rvar = bn_params(rng, c_max)
        x = bn_input(rng, n, c, hw)
        y = F.batch_norm(t64(x), t64(rmean[:c]), t64(rvar[:c]),
                         t64(gamma[:c]) if affine else None,
                         t64(beta[:c]) if affine else None, training=False,
                         eps=BN_EPS)
        if relu:
            y = F.relu(y)
        g = out.case("bn_infer", n=n, c=c, c_max=c_max, hw=hw,
                     affine=affine, relu=relu, inplace=inplace, eps=BN_EPS,
                     momentum=BN_MOMENTUM)
        store(g, x=x, running_mean=rmean, running_var=rvar, y=y)
        if affine:
            store(g, gamma=gamma, beta=beta)


def relu(out, rng):
    for count, inplace in RELU:
        x = randn(rng, count)
        # Exact zeros of both signs: ReLU passes no gradient there.
        x[::7] = 0.0
        x[3::11] = -0.0
        xt = leaf(x)
        y = F.relu(xt)
        dy = randn(rng, count)
        y.backward(t64(dy))
        g = out.case("relu", count=count, inplace=inplace)
        store(g, x=x, y=y, dy=dy, dx=xt.grad)


def split(out, rng):
    for n, c, hw in SPLIT:
        x = randn(rng, n, c, hw)
        xt = leaf(x)
        # SPOS channel_shuffle: channels 0, 2, 4, ... then 1, 3, 5, ...
        halves = (xt.reshape(n * c // 2, 2, hw).permute(1, 0, 2)
                  .reshape(2, -1, c // 2, hw))
        even, odd = halves[0], halves[1]
        deven, dodd = randn(rng, n, c // 2, hw), randn(rng, n, c // 2, hw)
        torch.autograd.backward([even, odd], [t64(deven), t64(dodd)])
        g = out.case("split", n=n, c=c, hw=hw)
        store(g, x=x, even=even, odd=odd, deven=deven, dodd=dodd,
              dx=xt.grad)


def concat(out, rng):
    for n, ca, cb, hw in CONCAT:
        a, b = randn(rng, n, ca, hw), randn(rng, n, cb, hw)
        at, bt = leaf(a), leaf(b)
        y = torch.cat([at, bt], 1)
        dy = randn(rng, *y.shape)
        y.backward(t64(dy))
        g = out.case("concat", n=n, ca=ca, cb=cb, hw=hw)
        store(g, a=a, b=b, y=y, dy=dy, da=at.grad, db=bt.grad)


def avgpool(out, rng):
    for n, c, hw in AVGPOOL:
        x = randn(rng, n, c, hw)
        xt = leaf(x)
        y = xt.mean(2)
        dy = randn(rng, n, c)
        y.backward(t64(dy))
        g = out.case("avgpool", n=n, c=c, hw=hw)
        store(g, x=x, y=y, dy=dy, dx=xt.grad)


def linear(out, rng):
    for n, d_in, d_out, bias in LINEAR:
        x = randn(rng, n, d_in)
        wt = randn(rng, d_out, d_in, scale=1 / math.sqrt(d_in))
        b = randn(rng, d_out, scale=0.1)
        xt, wtt, bt = leaf(x), leaf(wt), leaf(b)
        y = F.linear(xt, wtt, bt if bias else None)
        dy = randn(rng, n, d_out)
        y.backward(t64(dy))
        g = out.case("linear", n=n, d_in=d_in, d_out=d_out, bias=bias)
        store(g, x=x, w=wt, y=y, dy=dy, dx=xt.grad, dw=wtt.grad)
        if bias:
            store(g, b=b, db=bt.grad)


def xent(out, rng):
    for n, k, smoothing, scale in XENT:
        s = float(np.float32(smoothing))
        logits = randn(rng, n, k, scale=scale)
        labels = rng.integers(0, k, n).astype(np.int32)
        lt = leaf(logits)
        target = torch.from_numpy(labels.astype(np.int64))
        loss = F.cross_entropy(lt, target, label_smoothing=s)
        loss.backward()
        losses = F.cross_entropy(lt.detach(), target, reduction="none",
                                 label_smoothing=s)
        g = out.case("xent", n=n, k=k, smoothing=s)
        store(g, logits=logits, labels=labels,
              probs=torch.softmax(lt.detach(), 1), losses=losses,
              loss=loss.reshape(1), dlogits=lt.grad)


def accuracy(out, rng):
    for n, k, ties in ACCURACY:
        labels = rng.integers(0, k, n).astype(np.int32)
        if ties:
            # Small integers: many logits equal the label's own.
            logits = rng.integers(-3, 4, (n, k)).astype(np.float32)
        else:
            logits = randn(rng, n, k)
            # Lift about half the labels' logits so that hits are common.
            logits[np.arange(n), labels] += rng.uniform(0, 3, n).astype(
                np.float32)
        # The backend's rule: a label is within the top t when fewer than
        # t logits are strictly greater than its own.
        above = (logits > logits[np.arange(n), labels][:, None]).sum(1)
        counts = np.array([(above < 1).sum(), (above < 5).sum()])
        if not ties:
            # Without ties the rule is torch.topk's.
            lt, target = torch.from_numpy(logits), torch.from_numpy(labels)
            top = lt.topk(min(5, k), 1).indices
            hits = top == target.long()[:, None]
            topk = [int(hits[:, :1].any(1).sum()), int(hits.any(1).sum())]
            assert counts.tolist() == topk, (counts, topk)
        g = out.case("accuracy", n=n, k=k, ties=ties)
        store(g, logits=logits, labels=labels, counts=counts)


def sgd(out, rng):
    for size, regions, nesterov, lrs in SGD:
        steps = len(lrs)
        param0 = randn(rng, size)
        grads = randn(rng, steps, size, scale=0.5)
        views = []
        for offset, rows, cols, ld, _ in regions:
            rows_of = np.arange(rows)[:, None] * ld + np.arange(cols)
            views.append(offset + rows_of)
        params = [leaf(param0[v]) for v in views]
        opt = torch.optim.SGD(
            [{"params": [p], "weight_decay": r[4]}
             for p, r in zip(params, regions)],
            lr=lrs[0], momentum=SGD_MOMENTUM, dampening=0,
            nesterov=bool(nesterov))
        for step, lr in enumerate(lrs):
            for group in opt.param_groups:
                group["lr"] = float(np.float32(lr))
            for p, v in zip(params, views):
                p.grad = t64(grads[step][v])
            opt.step()
        param, mom = param0.copy(), np.zeros(size, np.float32)
        for p, v in zip(params, views):
            param[v] = p.detach().numpy()
            mom[v] = opt.state[p]["momentum_buffer"].numpy()
        g = out.case("sgd", size=size, steps=steps, nregions=len(regions),
                     nesterov=nesterov, momentum=SGD_MOMENTUM, dampening=0.0)
        store(g, param0=param0, grads=grads, lr=np.array(lrs),
              regions=np.array([r[:4] for r in regions]),
              region_wd=np.array([r[4] for r in regions]), param=param,
              mom=mom)


GENERATORS = [conv2d, pointwise, depthwise, bn_train, bn_infer, relu, split,
              concat, avgpool, linear, xent, accuracy, sgd]


def main(argv):
    if len(argv) != 2:
        sys.exit(f"usage: {argv[0]} OUT.h5")
    start = time.time()
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    with h5py.File(argv[1], "w") as h5:
        h5.attrs["torch_version"] = str(torch.__version__)
        h5.attrs["seed"] = SEED
        out = RefFile(h5)
        for generate in GENERATORS:
            generate(out, rng)
    total = sum(out.count.values())
    kinds = ", ".join(f"{op} {n}" for op, n in out.count.items())
    print(f"{argv[1]}: {total} cases ({kinds}) with torch "
          f"{torch.__version__} in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main(sys.argv)
