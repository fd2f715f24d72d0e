#!/usr/bin/env python3
"""PyTorch counterpart of bench/train.c: training-step and evaluation throughput of one supernet path, on the
CPU (bench/train.sh, Debian's torch) or on a GPU with cuDNN (bench/gpu.sh).

    python3 bench/train_torch.py [--config FILE] [--arch ARCH] [--batch N] [--steps N] [--warmup N]
                                 [--device cpu|cuda] [--threads N]

The network is tests/ref/spos.PathNet of the same space and architecture, BN without affine parameters (as
the supernet), NCHW float32. A training step is zero_grad, forward (train-mode BN), label-smoothed (0.1)
cross-entropy, backward and a torch.optim.SGD step (lr 0.01, momentum 0.9, weight decay 4e-5: bench/train.c's
hsc_step_opts) on a fixed random batch already on the device; evaluation is the eval-mode forward under
torch.no_grad(). The options, their defaults and the timing protocol are bench/train.c's: --warmup untimed
steps (on the GPU cudnn.benchmark picks its algorithms there), then --steps timed ones, each to the end of
its device work (torch.cuda.synchronize on the GPU); median (steps // 2 of the sorted times) and best. The
default architecture is bench/train.c's: block l takes the space's operator l mod (operator count) at the
scale nearest 1.0.

On the GPU: float32 everywhere, TF32 off for cuDNN convolutions and matmuls (torch allows it in cuDNN by
default), because the C engine computes plain float32; the comparison is the same arithmetic. On the CPU,
--threads (default OMP_NUM_THREADS, else the core count) goes to torch.set_num_threads.

Prints "train_img_s MEDIAN BEST" and "eval_img_s MEDIAN BEST" as bench/train.c does, then device, batch,
arch and mflops (multiply-accumulates per image, the count hsc_arch_flops gives, so that the shell scripts
check that both sides ran the same network).
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

import spos  # noqa: E402

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


def default_threads():
    v = os.environ.get("OMP_NUM_THREADS", "")
    return int(v) if v.isdigit() and int(v) > 0 else (os.cpu_count() or 1)


def default_arch(space):
    """bench/train.c's default: operator l mod nops at the scale nearest 1.0."""
    one = min(range(len(space.scales)), key=lambda i: abs(space.scales[i] - 1.0))
    return [(space.ops[l % len(space.ops)], one) for l in range(space.nblocks)]


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
    p = argparse.ArgumentParser(description="PyTorch twin of bench/train.c")
    p.add_argument("--config", default=os.path.join(HERE, "..", "configs", "fmnist.yaml"))
    p.add_argument("--arch", default=None)
    p.add_argument("--batch", type=positive, default=128)
    p.add_argument("--steps", type=positive, default=30)
    p.add_argument("--warmup", type=non_negative, default=5)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=positive, default=default_threads())
    a = p.parse_args()

    torch.manual_seed(1)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    else:
        torch.set_num_threads(a.threads)
    try:
        space = spos.load_space(a.config)
        arch = spos.parse_arch(space, a.arch) if a.arch else default_arch(space)
    except (OSError, ValueError) as e:
        sys.exit("train_torch.py: %s" % e)
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
        desc = "torch %s, CUDA %s, cuDNN %s, %s" % (torch.__version__, torch.version.cuda,
                                                   torch.backends.cudnn.version(), torch.cuda.get_device_name(dev))
    else:
        config = torch.__config__.show().splitlines()
        cap = next((l.split(":", 1)[1].strip() for l in config if "CPU capability" in l), "?")
        desc = "torch %s, %d threads, CPU capability %s, mkldnn %s" % (
            torch.__version__, torch.get_num_threads(), cap, torch.backends.mkldnn.is_available())
        print("torch %s\nthreads %d" % (torch.__version__, torch.get_num_threads()))
    print("device %s" % desc)
    print("batch %d\narch %s\nmflops %.2f" % (a.batch, spos.format_arch(space, arch), macs / 1e6))


if __name__ == "__main__":
    main()
