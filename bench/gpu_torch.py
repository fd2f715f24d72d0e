#!/usr/bin/python3
"""PyTorch + cuDNN counterpart of bench/gpu.c: training-step and evaluation throughput of one supernet path
of the ImageNet space on a GPU.

    python3 bench/gpu_torch.py [--config FILE] [--arch ARCH] [--batch N] [--steps N] [--warmup N]
                               [--device cuda|cpu]

The network is tests/ref/spos.PathNet of the same space and architecture, BN without affine parameters (as
the supernet), NCHW float32. A training step is zero_grad, forward (train-mode BN), label-smoothed (0.1)
cross-entropy, backward and a torch.optim.SGD step (lr 0.01, momentum 0.9, weight decay 4e-5: bench/gpu.c's
hsc_step_opts) on a fixed random batch already on the device; evaluation is the eval-mode forward under
torch.no_grad(). Each step is timed to the end of its GPU work (torch.cuda.synchronize), as bench/gpu.c
times to the backend's sync: --warmup untimed steps (cudnn.benchmark picks its algorithms there), then
--steps timed ones; median (steps // 2 of the sorted times) and best.

Precision: float32 everywhere, TF32 off for both cuDNN convolutions and matmuls (torch's default allows it
in cuDNN), because the C engine computes in plain float32; the comparison is the same arithmetic.
--device cpu (default when no GPU is visible) runs the same code on the CPU: a smoke test only.

Prints "train_img_s MEDIAN BEST" and "eval_img_s MEDIAN BEST", then device, batch, arch and mflops
(multiply-accumulates per image, the count hsc_arch_flops gives, so bench/gpu.sh can check that both sides
ran the same network).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))


def _scalar(text):
    text = text.strip().strip("'\"")
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text, text)


def _mini_safe_load(stream):
    """The subset of YAML the configs use (nested maps by indentation, scalars, [a, b] lists, # comments):
    a stand-in for PyYAML, which a GPU machine's PyTorch environment may lack; tests/ref/spos.py imports
    yaml only to read the space section of a config."""
    root, stack = {}, [(-1, None)]
    stack[0] = (-1, root)
    for raw in stream.read().splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        while stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        value = value.strip()
        if not value:
            parent[key] = {}
            stack.append((indent, parent[key]))
        elif value.startswith("["):
            parent[key] = [_scalar(v) for v in value.strip("[]").split(",") if v.strip()]
        else:
            parent[key] = _scalar(value)
    return root


try:
    import yaml  # noqa: F401
except ImportError:
    import types
    sys.modules["yaml"] = types.SimpleNamespace(safe_load=_mini_safe_load)
try:
    import numpy  # noqa: F401  (spos uses it only to load supernet weights, which this script does not)
except ImportError:
    import types
    sys.modules["numpy"] = types.SimpleNamespace()
import spos  # noqa: E402

# bench/gpu.c's DEFAULT_ARCH and hsc_step_opts
DEFAULT_ARCH = ",".join(["shuffle3:1.0", "shuffle5:1.0", "shuffle7:1.0", "xception:1.0"] * 5)
LR, MOMENTUM, WEIGHT_DECAY, SMOOTHING = 0.01, 0.9, 4e-5, 0.1


def positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError("must be positive")
    return v


def non_negative(text):
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return v


def timed(fn, sync, steps, warmup):
    """(median, best) seconds per call of fn() over `steps` calls after `warmup` untimed ones."""
    t = []
    for s in range(-warmup, steps):
        t0 = time.perf_counter()
        fn()
        sync()
        if s >= 0:
            t.append(time.perf_counter() - t0)
    t.sort()
    return t[steps // 2], t[0]


def main():
    p = argparse.ArgumentParser(description="PyTorch twin of bench/gpu.c")
    p.add_argument("--config", default=os.path.join(HERE, "..", "configs", "imagenet.yaml"))
    p.add_argument("--arch", default=DEFAULT_ARCH)
    p.add_argument("--batch", type=positive, default=128)
    p.add_argument("--steps", type=positive, default=30)
    p.add_argument("--warmup", type=non_negative, default=5)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()

    torch.manual_seed(1)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(a.device)
    try:
        space = spos.load_space(a.config)
        arch = spos.parse_arch(space, a.arch)
    except (OSError, ValueError) as e:
        sys.exit("gpu_torch.py: %s" % e)
    net = spos.PathNet(space, arch, affine=False)
    x = torch.randn(a.batch, space.in_c, space.in_h, space.in_w)
    y = torch.randint(0, space.classes, (a.batch,))
    with torch.no_grad():
        macs, _ = spos.count_flops(net.eval(), x[:1])
    net = net.to(dev)
    x, y = x.to(dev), y.to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def train_step():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y, label_smoothing=SMOOTHING)
        loss.backward()
        opt.step()

    def eval_step():
        with torch.no_grad():
            net(x)

    net.train()
    med, best = timed(train_step, sync, a.steps, a.warmup)
    print("train_img_s %.1f %.1f" % (a.batch / med, a.batch / best), flush=True)
    net.eval()
    med, best = timed(eval_step, sync, a.steps, a.warmup)
    print("eval_img_s %.1f %.1f" % (a.batch / med, a.batch / best), flush=True)

    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        desc = "torch %s, CUDA %s, cuDNN %s, %s" % (torch.__version__, torch.version.cuda,
                                                   torch.backends.cudnn.version(), name)
    else:
        desc = "torch %s on the CPU (%d threads): smoke test, not a GPU figure" % (torch.__version__,
                                                                                  torch.get_num_threads())
    print("device %s" % desc)
    print("batch %d\narch %s\nmflops %.2f" % (a.batch, a.arch, macs / 1e6))


if __name__ == "__main__":
    main()
