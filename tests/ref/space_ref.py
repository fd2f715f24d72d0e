"""PyTorch reference for the space module's FLOPs and parameter counts (tests/test_space.c).

    /usr/bin/python3 tests/ref/space_ref.py OUT.h5

For each shipped space (configs/fmnist.yaml, configs/imagenet.yaml) and about
24 architectures (the uniform ones at the largest scale, at the smallest and at
1.0, then random ones from a seeded numpy Generator), builds the stand-alone
PathNet (affine BN) and stores, in group SPACE:
  arch    vlen str [n]: the text form
  flops   int64 [n]: multiply-accumulates per image counted by forward hooks
  params  int64 [n]: sum of p.numel() over the network's parameters
Also checks that the forward pass gives [2, classes], that the full-width path
has the supernet's max-width shapes and that load_supernet_slices copies the
leading slices.
"""
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spos  # noqa: E402

SEED = 20240612
N_RANDOM = 12
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SPACES = (("fmnist", "configs/fmnist.yaml"), ("imagenet", "configs/imagenet.yaml"))


def architectures(space, rng):
    top, bottom = len(space.scales) - 1, 0
    archs = [[(op, top)] * space.nblocks for op in space.ops]
    archs += [[(op, bottom)] * space.nblocks for op in space.ops]
    if 1.0 in space.scales:  # the width-multiplier-1 networks quoted in the docs
        one = space.scales.index(1.0)
        archs += [[(op, one)] * space.nblocks for op in space.ops]
    for _ in range(N_RANDOM):
        archs.append([(space.ops[rng.integers(len(space.ops))], int(rng.integers(len(space.scales))))
                      for _ in range(space.nblocks)])
    return archs


def check_slices(space, arch, rng):
    """The full-width path has the max-width shapes; a path gets the leading slices."""
    full = spos.PathNet(space, arch, affine=False, mid_override=space.max_mid)
    shapes = spos.supernet_shapes(space, affine=False)
    for name, t in full.param_map().items():
        assert tuple(spos.c_shape(name, t)) == tuple(shapes[name]), (name, t.shape, shapes[name])
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    net = spos.PathNet(space, arch, affine=False)
    net.load_supernet_slices(weights)
    for name, t in net.param_map().items():
        shape = spos.c_shape(name, t)
        want = weights[name][tuple(slice(0, s) for s in shape)]
        assert np.array_equal(t.detach().numpy().reshape(shape), want), name


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: space_ref.py OUT.h5")
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    with h5py.File(sys.argv[1], "w") as f:
        for key, path in SPACES:
            space = spos.load_space(os.path.join(ROOT, path))
            texts, flops, params = [], [], []
            archs = architectures(space, rng)
            for arch in archs:
                text = spos.format_arch(space, arch)
                assert spos.parse_arch(space, text) == arch, text
                net = spos.PathNet(space, arch, affine=True).eval()
                x = torch.randn(2, space.in_c, space.in_h, space.in_w)
                with torch.no_grad():
                    macs, out = spos.count_flops(net, x)
                assert tuple(out.shape) == (2, space.classes), out.shape
                texts.append(text)
                flops.append(macs)
                params.append(sum(p.numel() for p in net.parameters()))
            check_slices(space, archs[-1], rng)
            g = f.create_group(key)
            g.create_dataset("arch", data=texts, dtype=h5py.string_dtype())
            g.create_dataset("flops", data=np.array(flops, dtype=np.int64))
            g.create_dataset("params", data=np.array(params, dtype=np.int64))
            print("%s: %d architectures, %d to %d FLOPs" % (key, len(texts), min(flops), max(flops)))


if __name__ == "__main__":
    main()
