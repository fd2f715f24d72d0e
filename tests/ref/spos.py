"""PyTorch reference of the hsconas search space (include/hsconas/space.h).

Importable by the reference scripts (run with /usr/bin/python3: torch, numpy,
h5py, PyYAML):

    import spos
    space = spos.load_space("configs/fmnist.yaml")
    arch = spos.parse_arch(space, "shuffle3:1.0,xception:0.6,...")
    net = spos.PathNet(space, arch, affine=True)
    net.param_map()                      # C parameter name -> torch tensor
    net.load_supernet_slices(h5_group)   # leading slices of max-width weights

The shapes, the mid-width table and the text form are derived here
independently of the C code, with the same formulas, so a test comparing the
two checks both.

C parameter names (max-width shapes in supernet_shapes()):
  stem.conv [stem_c, in_c, 3, 3], BN stem.bn
  blocks.{l}.{op}.  shuffleK: pw1 [max_mid, main_in] bn1, dw [max_mid, K, K] bn2,
                              pw2 [main_out, max_mid] bn3
                    xception: dw1 [main_in, 3, 3] bn1, pw1 [max_mid, main_in] bn2,
                              dw2 [max_mid, 3, 3] bn3, pw2 [max_mid, max_mid] bn4,
                              dw3 [max_mid, 3, 3] bn5, pw3 [main_out, max_mid] bn6
                    first block of a stage: proj.dw [cin, k, k] proj.bn1,
                              proj.pw [cin, cin] proj.bn2 (k: the op's kernel)
  head.conv [head_c, last_width], BN head.bn; classifier [classes, head_c]
  BN X: X.mean, X.var and, when affine, X.gamma, X.beta [channels].
Pointwise weights are 2-D [out, in] in C (torch [out, in, 1, 1]), depthwise
[c, k, k] (torch [c, 1, k, k]); c_shape() converts.
"""
import collections
import math

import numpy as np
import torch
import torch.nn as nn
import yaml

OPS = ("shuffle3", "shuffle5", "shuffle7", "xception")
KERNEL = {"shuffle3": 3, "shuffle5": 5, "shuffle7": 7, "xception": 3}

# The C defaults of the space.* keys (src/core/config_schema.c).
DEFAULTS = {
    "input_channels": 1,
    "input_size": 28,
    "stem_channels": 16,
    "stem_stride": 1,
    "stage_channels": [48, 96, 192],
    "stage_blocks": [2, 4, 2],
    "stage_strides": [2, 2, 1],
    "head_channels": 512,
    "classes": 10,
    "ops": list(OPS),
    "scales": [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0],
}

Block = collections.namedtuple(
    "Block", "stage cin cout stride h_in w_in h_out w_out has_proj main_in main_out")


def conv_out(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


class Space:
    """The derived space: block shapes and the mid-width table."""

    def __init__(self, **keys):
        unknown = set(keys) - set(DEFAULTS)
        if unknown:
            raise ValueError("unknown space keys: %s" % ", ".join(sorted(unknown)))
        v = dict(DEFAULTS)
        v.update(keys)
        self.in_c = int(v["input_channels"])
        self.in_h = self.in_w = int(v["input_size"])
        self.stem_c = int(v["stem_channels"])
        self.stem_stride = int(v["stem_stride"])
        self.stem_h = conv_out(self.in_h, 3, self.stem_stride, 1)
        self.stem_w = conv_out(self.in_w, 3, self.stem_stride, 1)
        self.head_c = int(v["head_channels"])
        self.classes = int(v["classes"])
        self.ops = [str(o) for o in v["ops"]]
        for o in self.ops:
            if o not in OPS:
                raise ValueError("space.ops: unknown operator %r" % o)
        self.scales = [float(s) for s in v["scales"]]
        widths, counts, strides = v["stage_channels"], v["stage_blocks"], v["stage_strides"]
        if not len(widths) == len(counts) == len(strides):
            raise ValueError("space.stage_*: lists of different lengths")
        self.blocks, self.mid, self.max_mid = [], [], []
        width, h, w = self.stem_c, self.stem_h, self.stem_w
        for i, (c, nb, stride) in enumerate(zip(widths, counts, strides)):
            if c % 2 or c <= width:
                raise ValueError("space.stage_channels[%d]: %d" % (i, c))
            for j in range(nb):
                first = j == 0
                st = stride if first else 1
                ho, wo = conv_out(h, 3, st, 1), conv_out(w, 3, st, 1)
                cin = width if first else c
                self.blocks.append(Block(i, cin, c, st, h, w, ho, wo, first,
                                         cin if first else c // 2,
                                         c - cin if first else c // 2))
                # mid = max(1, floor(C/2 * scale + 1e-6)), in the same double
                # operations as the C code.
                mids = [max(1, int(math.floor((c // 2) * s + 1e-6))) for s in self.scales]
                self.mid.append(mids)
                self.max_mid.append(max(mids))
                h, w = ho, wo
            width = c

    @property
    def nblocks(self):
        return len(self.blocks)


def load_space(yaml_path):
    """The space section of a config file, with the C defaults for missing keys."""
    with open(yaml_path) as f:
        doc = yaml.safe_load(f) or {}
    return Space(**(doc.get("space") or {}))


def scale_text(v):
    """'%.1f' when it reads back exactly, else the shortest '%g' that does (as the C code)."""
    t = "%.1f" % v
    if float(t) == v:
        return t
    for p in range(1, 18):
        t = "%.*g" % (p, v)
        if float(t) == v:
            return t
    return repr(v)


def format_arch(space, arch):
    """The text form 'shuffle3:1.0,xception:0.6,...' of [(op, scale_index), ...]."""
    return ",".join("%s:%s" % (op, scale_text(space.scales[s])) for op, s in arch)


def parse_arch(space, text):
    """[(op name, scale index), ...] from the text form or a YAML list form."""
    text = "\n".join(line.split("#", 1)[0] for line in text.split("\n")).strip()
    if text.startswith("arch:"):
        text = text[5:].strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError("architecture: '[' without a closing ']'")
        text = text[1:-1]
    genes = []
    for g in text.replace("\n", ",").split(","):
        g = g.strip()
        if g == "-" or g.startswith("- ") or g.startswith("-\t"):
            g = g[1:].strip()
        if len(g) >= 2 and g[0] in "'\"" and g[-1] == g[0]:
            g = g[1:-1].strip()
        if g:
            genes.append(g)
    if len(genes) != space.nblocks:
        raise ValueError("architecture has %d genes, the space has %d blocks" % (len(genes), space.nblocks))
    arch = []
    for i, g in enumerate(genes):
        if ":" not in g:
            raise ValueError("gene %d '%s': expected OPERATOR:SCALE" % (i, g))
        op, value = (x.strip() for x in g.split(":", 1))
        if op not in OPS:
            raise ValueError("gene %d '%s': unknown operator '%s' (expected %s)" % (i, g, op, ", ".join(OPS)))
        if op not in space.ops:
            raise ValueError("gene %d '%s': operator '%s' is not in space.ops" % (i, g, op))
        v = float(value)
        idx = [j for j, s in enumerate(space.scales) if abs(v - s) <= 1e-9 * max(1.0, abs(s))]
        if not idx:
            raise ValueError("gene %d: scale %s is not in space.scales" % (i, value))
        arch.append((op, idx[-1]))
    return arch


# --- the network ---------------------------------------------------------

def _bn(c, affine, eps, momentum):
    return nn.BatchNorm2d(c, eps=eps, momentum=momentum, affine=affine)


def _pw(cin, cout):
    return nn.Conv2d(cin, cout, 1, 1, 0, bias=False)


def _dw(c, k, stride):
    return nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False)


class ChoiceBlock(nn.Module):
    """One block of the path: main branch, and the projection branch when it starts a stage.

    `layers` lists (C name suffix, module) in network order, for param_map()."""

    def __init__(self, shape, op, mid, affine, eps, momentum):
        super().__init__()
        b, m, k = shape, mid, KERNEL[op]
        bn = lambda c: _bn(c, affine, eps, momentum)  # noqa: E731
        relu = lambda: nn.ReLU(inplace=False)  # noqa: E731
        if op == "xception":
            named = [("dw1", _dw(b.main_in, 3, b.stride)), ("bn1", bn(b.main_in)),
                     ("pw1", _pw(b.main_in, m)), ("bn2", bn(m)), ("relu", relu()),
                     ("dw2", _dw(m, 3, 1)), ("bn3", bn(m)),
                     ("pw2", _pw(m, m)), ("bn4", bn(m)), ("relu", relu()),
                     ("dw3", _dw(m, 3, 1)), ("bn5", bn(m)),
                     ("pw3", _pw(m, b.main_out)), ("bn6", bn(b.main_out)), ("relu", relu())]
        else:
            named = [("pw1", _pw(b.main_in, m)), ("bn1", bn(m)), ("relu", relu()),
                     ("dw", _dw(m, k, b.stride)), ("bn2", bn(m)),
                     ("pw2", _pw(m, b.main_out)), ("bn3", bn(b.main_out)), ("relu", relu())]
        self.main = nn.Sequential(*[mod for _, mod in named])
        self.layers = [(n, mod) for n, mod in named if n != "relu"]
        self.has_proj = b.has_proj
        if b.has_proj:
            pnamed = [("proj.dw", _dw(b.cin, k, b.stride)), ("proj.bn1", bn(b.cin)),
                      ("proj.pw", _pw(b.cin, b.cin)), ("proj.bn2", bn(b.cin)), ("relu", relu())]
            self.proj = nn.Sequential(*[mod for _, mod in pnamed])
            self.layers += [(n, mod) for n, mod in pnamed if n != "relu"]

    def forward(self, x):
        if self.has_proj:
            return torch.cat((self.proj(x), self.main(x)), 1)
        n, c, h, w = x.shape
        x = x.reshape(n, c // 2, 2, h, w)
        even, odd = x[:, :, 0], x[:, :, 1]
        return torch.cat((even, self.main(odd)), 1)


class PathNet(nn.Module):
    """The stand-alone network of one architecture.

    arch: [(op name, scale index), ...] (parse_arch) or its text form.
    affine: BN with gamma and beta (stand-alone networks) or without (the supernet).
    mid_override: per-block mid widths used instead of the scale's (e.g.
    space.max_mid for the full-width path)."""

    def __init__(self, space, arch, affine=True, mid_override=None, bn_eps=1e-5, bn_momentum=0.1):
        super().__init__()
        if isinstance(arch, str):
            arch = parse_arch(space, arch)
        assert len(arch) == space.nblocks
        self.space, self.arch, self.affine = space, list(arch), affine
        self.mids = list(mid_override) if mid_override is not None else \
            [space.mid[l][s] for l, (_, s) in enumerate(arch)]
        bn = lambda c: _bn(c, affine, bn_eps, bn_momentum)  # noqa: E731
        self.stem_conv = nn.Conv2d(space.in_c, space.stem_c, 3, space.stem_stride, 1, bias=False)
        self.stem_bn = bn(space.stem_c)
        self.blocks = nn.ModuleList(
            ChoiceBlock(b, op, self.mids[l], affine, bn_eps, bn_momentum)
            for l, (b, (op, _)) in enumerate(zip(space.blocks, arch)))
        last = space.blocks[-1].cout
        self.head_conv = _pw(last, space.head_c)
        self.head_bn = bn(space.head_c)
        self.classifier = nn.Linear(space.head_c, space.classes, bias=False)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem_conv(x)))
        for b in self.blocks:
            x = b(x)
        x = torch.relu(self.head_bn(self.head_conv(x)))
        return self.classifier(x.mean((2, 3)))

    def _named_layers(self):
        yield "stem.conv", self.stem_conv
        yield "stem.bn", self.stem_bn
        for l, (b, (op, _)) in enumerate(zip(self.blocks, self.arch)):
            for n, mod in b.layers:
                yield "blocks.%d.%s.%s" % (l, op, n), mod
        yield "head.conv", self.head_conv
        yield "head.bn", self.head_bn
        yield "classifier", self.classifier

    def param_map(self):
        """OrderedDict: C parameter name -> the torch tensor (parameter or running-stat buffer), in
        network order. Tensors have torch's shapes; c_shape(name, t) gives the C one."""
        out = collections.OrderedDict()
        for name, mod in self._named_layers():
            if isinstance(mod, nn.BatchNorm2d):
                out[name + ".mean"] = mod.running_mean
                out[name + ".var"] = mod.running_var
                if mod.affine:
                    out[name + ".gamma"] = mod.weight
                    out[name + ".beta"] = mod.bias
            else:
                out[name] = mod.weight
        return out

    def load_supernet_slices(self, src):
        """Copies the leading slice of each max-width array src[C name] (an h5py group or a dict of numpy
        arrays in C shapes) into this path. BN gamma/beta absent from src (a non-affine supernet) are left
        as they are; any other missing name is an error."""
        with torch.no_grad():
            for name, t in self.param_map().items():
                if name not in src:
                    if name.endswith((".gamma", ".beta")):
                        continue
                    raise KeyError("supernet weights lack %s" % name)
                arr = np.asarray(src[name])
                shape = c_shape(name, t)
                if arr.ndim != len(shape) or any(a < s for a, s in zip(arr.shape, shape)):
                    raise ValueError("%s: supernet shape %s cannot hold the path's %s"
                                     % (name, arr.shape, shape))
                part = np.ascontiguousarray(arr[tuple(slice(0, s) for s in shape)])
                t.copy_(torch.from_numpy(part).reshape(t.shape).to(t.dtype))


def c_shape(name, t):
    """The C shape of tensor t named `name`: pointwise [out, in], depthwise [c, k, k], others as torch."""
    shape = tuple(t.shape)
    last = name.rsplit(".", 1)[-1]
    if len(shape) == 4 and (last.startswith("pw") or name == "head.conv"):
        return shape[:2]
    if len(shape) == 4 and last.startswith("dw"):
        return (shape[0],) + shape[2:]
    return shape


def supernet_shapes(space, affine=False):
    """OrderedDict: C name -> max-width C shape, for every block and every operator of the space."""
    out = collections.OrderedDict()

    def bn(name, c):
        out[name + ".mean"] = (c,)
        out[name + ".var"] = (c,)
        if affine:
            out[name + ".gamma"] = (c,)
            out[name + ".beta"] = (c,)

    out["stem.conv"] = (space.stem_c, space.in_c, 3, 3)
    bn("stem.bn", space.stem_c)
    for l, b in enumerate(space.blocks):
        m = space.max_mid[l]
        for op in space.ops:
            p, k = "blocks.%d.%s." % (l, op), KERNEL[op]
            if op == "xception":
                layers = [("dw1", (b.main_in, 3, 3)), ("bn1", b.main_in), ("pw1", (m, b.main_in)), ("bn2", m),
                          ("dw2", (m, 3, 3)), ("bn3", m), ("pw2", (m, m)), ("bn4", m),
                          ("dw3", (m, 3, 3)), ("bn5", m), ("pw3", (b.main_out, m)), ("bn6", b.main_out)]
            else:
                layers = [("pw1", (m, b.main_in)), ("bn1", m), ("dw", (m, k, k)), ("bn2", m),
                          ("pw2", (b.main_out, m)), ("bn3", b.main_out)]
            if b.has_proj:
                layers += [("proj.dw", (b.cin, k, k)), ("proj.bn1", b.cin),
                           ("proj.pw", (b.cin, b.cin)), ("proj.bn2", b.cin)]
            for n, shape in layers:
                if isinstance(shape, int):
                    bn(p + n, shape)
                else:
                    out[p + n] = shape
    out["head.conv"] = (space.head_c, space.blocks[-1].cout)
    bn("head.bn", space.head_c)
    out["classifier"] = (space.classes, space.head_c)
    return out


def count_flops(net, x):
    """Multiply-accumulates per image of net(x), from forward hooks on Conv2d and Linear:
    conv out.numel()/batch * in_channels/groups * kh * kw, linear in * out. Returns (flops, output)."""
    total = [0]

    def conv_hook(mod, inp, out):
        kh, kw = mod.kernel_size
        total[0] += out.numel() // out.shape[0] * (mod.in_channels // mod.groups) * kh * kw

    def linear_hook(mod, inp, out):
        total[0] += mod.in_features * mod.out_features

    handles = []
    for mod in net.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
    try:
        out = net(x)
    finally:
        for h in handles:
            h.remove()
    return total[0], out
