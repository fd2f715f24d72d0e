"""PyTorch reference of one supernet training step, on the C engine's exported weights and inputs.

Usage: step_ref.py IN.h5 OUT.h5

IN.h5 is written by `test_supernet_torch --export IN.h5` (the C engine, through its checkpoint writer):
/meta attributes config (the effective YAML), arch, fixed_arch, smoothing, lr, momentum, weight_decay;
/x [n, c, h, w], /y [n] (int64); for each variant V in (super, fixed): /V/params/<C name> and
/V/state/<C name> (max-width weights and BN statistics: the supernet, and the stand-alone network of
fixed_arch with affine BN).

For each variant this builds the same path with tests/ref/spos.py in float64, loads the leading slices,
runs forward (train-mode BN), label-smoothed cross-entropy, backward and one torch.optim.SGD step (weight
decay on conv/linear weights only), and writes to OUT.h5: /V/logits, /V/loss, /V/grad/<name>,
/V/after/<name> (updated parameters) and /V/state_after/<name> (running statistics), all in C shapes of
the path's slices, and /V/logits_eval (inference-mode BN on the updated network).
"""
import os
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spos  # noqa: E402


def attr(f, key):
    v = f["meta"].attrs[key]
    return v.decode() if isinstance(v, bytes) else v


def run_variant(f, out, group, space, arch, affine, cfg):
    net = spos.PathNet(space, arch, affine=affine, bn_eps=cfg["eps"], bn_momentum=cfg["bn_momentum"]).double()
    src = {}
    for part in ("params", "state"):
        for name, ds in f[group][part].items():
            src[name] = ds[...]
    net.load_supernet_slices(src)
    net.train()
    x = torch.from_numpy(f["x"][...]).double()
    y = torch.from_numpy(f["y"][...]).long()
    logits = net(x)
    loss = F.cross_entropy(logits, y, label_smoothing=cfg["smoothing"])
    loss.backward()
    pmap = net.param_map()
    decay, nodecay = [], []
    for name, t in pmap.items():
        if not t.requires_grad:
            continue
        out.create_dataset("%s/grad/%s" % (group, name), data=t.grad.numpy().reshape(spos.c_shape(name, t)))
        (nodecay if name.endswith((".gamma", ".beta")) else decay).append(t)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg["weight_decay"]},
                           {"params": nodecay, "weight_decay": 0.0}], lr=cfg["lr"], momentum=cfg["momentum"])
    opt.step()
    for name, t in pmap.items():
        key = "after" if t.requires_grad else "state_after"
        out.create_dataset("%s/%s/%s" % (group, key, name),
                           data=t.detach().numpy().reshape(spos.c_shape(name, t)))
    net.eval()  # inference on the updated weights and running statistics
    with torch.no_grad():
        out.create_dataset(group + "/logits_eval", data=net(x).numpy())
    out.create_dataset(group + "/logits", data=logits.detach().numpy())
    out.create_dataset(group + "/loss", data=np.array([loss.item()]))


def main():
    src, dst = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as out:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as tmp:
            tmp.write(attr(f, "config"))
        try:
            space = spos.load_space(tmp.name)
        finally:
            os.unlink(tmp.name)
        import yaml
        full = yaml.safe_load(attr(f, "config"))
        cfg = {"eps": float(full["supernet"]["bn_eps"]), "bn_momentum": float(full["supernet"]["bn_momentum"]),
               "smoothing": float(attr(f, "smoothing")), "lr": float(attr(f, "lr")),
               "momentum": float(attr(f, "momentum")), "weight_decay": float(attr(f, "weight_decay"))}
        run_variant(f, out, "super", space, attr(f, "arch"), False, cfg)
        run_variant(f, out, "fixed", space, attr(f, "fixed_arch"), True, cfg)


if __name__ == "__main__":
    main()
