#!/usr/bin/python3
"""PyTorch counterpart of bench/train.c: training-step and evaluation throughput of one supernet path.

    /usr/bin/python3 bench/train_torch.py [--config FILE] [--arch ARCH] [--batch N] [--steps N]
                                          [--warmup N] [--threads N]

The network is tests/ref/spos.PathNet of the same space and architecture, BN without affine parameters
(as the supernet). A training step is zero_grad, forward (train-mode BN), label-smoothed (0.1)
cross-entropy, backward and a torch.optim.SGD step (lr 0.01, momentum 0.9, weight decay 4e-5, the
hsc_step_opts of bench/train.c) on a fixed random batch; evaluation is the forward in eval mode under
torch.no_grad(). The options, their defaults and the timing protocol are those of bench/train.c: --warmup
untimed steps, then --steps timed ones; median (the middle of the sorted times, steps // 2) and best.
--threads defaults to OMP_NUM_THREADS (else the core count) and goes to torch.set_num_threads.

Prints "train_img_s MEDIAN BEST" and "eval_img_s MEDIAN BEST" as bench/train.c does, then the torch
version, threads, batch, arch and mflops (multiply-accumulates per image, the same count as the C side's
hsc_arch_flops, so that bench/train.sh can check that both ran the same network).
"""
import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "ref"))
import spos  # noqa: E402

# bench/train.c's DEFAULT_ARCH and hsc_step_opts
DEFAULT_ARCH = ("shuffle3:1.0,shuffle5:1.0,shuffle7:1.0,xception:1.0,"
                "shuffle3:1.0,shuffle5:1.0,shuffle7:1.0,xception:1.0")
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


def timed(fn, steps, warmup):
    """(median, best) seconds per call of fn() over `steps` calls after `warmup` untimed ones."""
    t = []
    for s in range(-warmup, steps):
        t0 = time.perf_counter()
        fn()
        if s >= 0:
            t.append(time.perf_counter() - t0)
    t.sort()
    return t[steps // 2], t[0]


def main():
    p = argparse.ArgumentParser(description="PyTorch twin of bench/train.c")
    p.add_argument("--config", default="configs/fmnist.yaml")
    p.add_argument("--arch", default=DEFAULT_ARCH)
    p.add_argument("--batch", type=positive, default=128)
    p.add_argument("--steps", type=positive, default=30)
    p.add_argument("--warmup", type=non_negative, default=5)
    p.add_argument("--threads", type=positive, default=default_threads())
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    try:
        space = spos.load_space(a.config)
        arch = spos.parse_arch(space, a.arch)
    except (OSError, ValueError) as e:
        sys.exit("train_torch.py: %s" % e)
    net = spos.PathNet(space, arch, affine=False)
    x = torch.randn(a.batch, space.in_c, space.in_h, space.in_w)
    y = torch.randint(0, space.classes, (a.batch,))
    with torch.no_grad():
        macs, _ = spos.count_flops(net.eval(), x[:1])
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)

    def train_step():
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y, label_smoothing=SMOOTHING)
        loss.backward()
        opt.step()

    def eval_step():
        with torch.no_grad():
            net(x)

    net.train()
    med, best = timed(train_step, a.steps, a.warmup)
    print("train_img_s %.1f %.1f" % (a.batch / med, a.batch / best), flush=True)
    net.eval()
    med, best = timed(eval_step, a.steps, a.warmup)
    print("eval_img_s %.1f %.1f" % (a.batch / med, a.batch / best), flush=True)

    config = torch.__config__.show().splitlines()
    cap = next((l.split(":", 1)[1].strip() for l in config if "CPU capability" in l), "?")
    print("torch %s" % torch.__version__)
    print("threads %d" % torch.get_num_threads())
    print("device torch %s, %d threads, CPU capability %s, mkldnn %s"
          % (torch.__version__, torch.get_num_threads(), cap, torch.backends.mkldnn.is_available()))
    print("batch %d\narch %s\nmflops %.2f" % (a.batch, a.arch, macs / 1e6))


if __name__ == "__main__":
    main()
