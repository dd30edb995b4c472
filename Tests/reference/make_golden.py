#!/usr/bin/env python3
"""Writes (and checks) the golden reference vectors of the Swift tests.

Every case is a safetensors file whose inputs are drawn here from a fixed seed (float32-representable)
and whose outputs are computed in float64 with PyTorch, torchvision and scikit-learn from the
definitions of SPEC.md (cited per function). The Swift golden tests read them by prefix
(`loss-`, `model-`, `optim-`, `metrics-`, `sei-`, `augment-`).

    python Tests/reference/make_golden.py [--out Tests/golden]   # write every case + CASES.txt
    python Tests/reference/make_golden.py --check DIR            # recompute DIR's outputs from its inputs

`--check` reads only the inputs and metadata of each case listed in DIR/CASES.txt, recomputes the
outputs with the functions that generate them and prints `check <case> ok <max rel err>` or
`check <case> FAIL <why>`; the exit status is 1 when any case fails.
"""
import argparse
import json
import math
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from torchvision.models.resnet import BasicBlock
from torchvision.transforms import _functional_tensor as TFT
from torchvision.transforms import InterpolationMode

SEED = 20251203
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "golden"


def case_rng(name):
    """The generator of one case (or shared input set): seeded from (SEED, crc32(name)), so a case's
    inputs do not depend on which other cases are generated or in which order."""
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def seed_torch(rng):
    """Seeds PyTorch's global generator from `rng` (used for the default layer initialisations)."""
    torch.manual_seed(int(rng.integers(2**31)))


def f64(a):
    """A numpy array as a float64 torch tensor."""
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header (tensors + "__metadata__" of
# strings), raw little-endian data. Tensors are laid out by dtype (F64, F32, I32) then name, as the
# `safetensors` package does; the header is padded with spaces to a multiple of 8 bytes.

DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "I32": np.dtype("<i4")}
DTYPE_NAMES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}


def write_safetensors(path, tensors, metadata):
    """Writes `tensors` (name -> float64, float32 or int32 numpy array) and `metadata` (str -> str,
    kept in the given order) to `path`."""
    order = sorted(tensors, key=lambda n: (list(DTYPES).index(DTYPE_NAMES[tensors[n].dtype]), n))
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in order:
        dtype = DTYPE_NAMES[tensors[name].dtype]
        data = np.ascontiguousarray(tensors[name], dtype=DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path):
    """Returns ({name: numpy array}, {metadata key: str}) of a safetensors file."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        tensors[name] = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=DTYPES[info["dtype"]]) \
            .reshape(info["shape"]).copy()
    return tensors, metadata


# ----------------------------------------------------------------------------------------------
# Losses (SPEC 1-3)

@dataclass
class LossConfig:
    """The hyper-parameters of a loss case (SPEC 2-3), as written in its metadata."""
    kind: str            # simclr, supcon, ccm, spa, mcl
    spa: str             # official, paper-sample, paper-expectation (spa and mcl only)
    tau: float
    alpha: float
    beta: float
    spa_weight: float    # lambda of MCL = CCM + lambda * SPA
    floor: float | None  # similarity floor, None = "none"
    use_aux: bool

    @staticmethod
    def from_metadata(md):
        """Reads a loss case's metadata; keys a kind does not use may be absent."""
        return LossConfig(kind=md["kind"], spa=md.get("spa", "official"), tau=float(md["tau"]),
                          alpha=float(md.get("alpha", "0.05")), beta=float(md.get("beta", "2.0")),
                          spa_weight=float(md.get("spa_weight", "1.0")),
                          floor=None if md["floor"] == "none" else float(md["floor"]),
                          use_aux=md["use_aux"] == "true")

    @property
    def samples_targets(self):
        return self.kind in ("spa", "mcl") and self.spa in ("official", "paper-sample")


def label_masks(main, aux, use_aux):
    """Boolean [V,V] masks of SPEC 2-3 for interleaved views (parent(k) = k // 2): `same_parent`,
    `same_y`, `positive` = B+ membership (same y, same r when aux is on, other parent), `beta_pair`
    (same y, different r, other parent; never with aux off)."""
    v = len(main)
    idx = torch.arange(v)
    y = torch.as_tensor(main, dtype=torch.long)
    r = torch.as_tensor(aux, dtype=torch.long) if use_aux else torch.zeros(v, dtype=torch.long)
    same_parent = (idx // 2)[:, None] == (idx // 2)[None, :]
    same_y = y[:, None] == y[None, :]
    same_r = r[:, None] == r[None, :]
    return same_parent, same_y, same_y & same_r & ~same_parent, same_y & ~same_r & ~same_parent


def multipliers(main, aux, cfg):
    """M(i,k) of SPEC 2: 1/tau for partners and different y, alpha for same y (and same r) with
    another parent, beta for same y and different r (aux on)."""
    same_parent, same_y, _, beta_pair = label_masks(main, aux, cfg.use_aux)
    m = torch.full(same_y.shape, 1 / cfg.tau, dtype=torch.float64)
    m[same_y & ~same_parent] = cfg.alpha
    m[beta_pair] = cfg.beta
    return m


def rows_nll(sim, weight, in_sum, target, tau, active):
    """sum_i active_i * [log sum_{k in S(i)} exp(sim_ik W_ik) - (1/tau) sum_k P_ik sim_ik] / V: the
    common form of every SPEC 3 term (S = `in_sum`, W = `weight`, P = `target`, rows with weights
    summing to 1). Inactive rows (empty B+) contribute 0 and the divisor stays V."""
    logits = (sim * weight).masked_fill(~in_sum, -math.inf)
    nll = torch.logsumexp(logits, dim=1) - (target * sim).sum(dim=1) / tau
    return (nll * active).sum() / sim.shape[0]


def contrastive_loss(z, main, aux, spa_target, cfg):
    """The SPEC 3 loss of the global batch z [V,D] (float64 tensor, interleaved views):
    u_i = z_i / max(|z_i|, 1e-12), sim = u u^T, optionally max(sim, floor) (zero gradient below).
    - simclr: -log softmax_{k!=i}(sim_ik/tau)[partner(i)]
    - supcon: -(1/|P(i)|) sum_{p in P(i)} log softmax_{k!=i}(sim_ik/tau)[p], P(i) = {k!=i: y_k = y_i}
    - ccm:    -log softmax_{k!=i}(sim_ik M(i,k))[partner(i)]
    - spa official: -log softmax_{k!=i}(sim_ik M'(i,k))[t(i)], M'(i,t) = 1/tau, M'(i,partner) = 0
    - spa paper-sample: -sim_{i,t(i)}/tau + log sum_{parent(k)!=parent(i)} exp(sim_ik M(i,k))
    - spa paper-expectation: the paper-sample term averaged over t in B+(i)
    - mcl = ccm + spa_weight * spa.
    SPA rows without a target (t = -1 or empty B+) contribute 0; every mean divides by V."""
    v = z.shape[0]
    u = F.normalize(z, dim=1, eps=1e-12)
    sim = u @ u.T
    if cfg.floor is not None:
        sim = sim.clamp_min(cfg.floor)
    idx = torch.arange(v)
    not_self = ~torch.eye(v, dtype=torch.bool)
    same_parent, same_y, positive, _ = label_masks(main, aux, cfg.use_aux)
    partner = F.one_hot(idx ^ 1, v).to(torch.float64)
    everyone = torch.ones(v, dtype=torch.float64)
    tau_w = torch.full((v, v), 1 / cfg.tau, dtype=torch.float64)
    if cfg.kind == "simclr":
        return rows_nll(sim, tau_w, not_self, partner, cfg.tau, everyone)
    if cfg.kind == "supcon":
        pos = (same_y & not_self).to(torch.float64)
        return rows_nll(sim, tau_w, not_self, pos / pos.sum(1, keepdim=True), cfg.tau, everyone)
    m = multipliers(main, aux, cfg)
    ccm = rows_nll(sim, m, not_self, partner, cfg.tau, everyone)
    if cfg.kind == "ccm":
        return ccm
    if cfg.spa == "paper-expectation":
        count = positive.sum(1, keepdim=True)
        target = positive.to(torch.float64) / count.clamp_min(1)
        spa = rows_nll(sim, m, ~same_parent, target, cfg.tau, (count[:, 0] > 0).to(torch.float64))
    else:
        t = torch.as_tensor(spa_target, dtype=torch.long)
        active = t >= 0
        target = F.one_hot(t.clamp_min(0), v).to(torch.float64) * active[:, None]
        if cfg.spa == "official":
            weight = torch.where(target > 0, 1 / cfg.tau, m).masked_fill(partner > 0, 0.0)
            spa = rows_nll(sim, weight, not_self, target, cfg.tau, active.to(torch.float64))
        else:
            spa = rows_nll(sim, m, ~same_parent, target, cfg.tau, active.to(torch.float64))
    return spa if cfg.kind == "spa" else ccm + cfg.spa_weight * spa


def sample_spa_targets(main, aux, cfg, rng):
    """SPA targets of SPEC 3 (-1 where B+(i) is empty). `official`: for image n, m uniform among the
    other images with the same (y, r) (y only when aux is off); t(2n) = 2m, t(2n+1) = 2m+1.
    `paper-sample`: each view draws t(i) uniformly from B+(i)."""
    _, _, positive, _ = label_masks(main, aux, cfg.use_aux)
    positive = positive.numpy()
    v = len(main)
    target = np.full(v, -1, dtype=np.int32)
    if cfg.spa == "official":
        for n in range(v // 2):
            images = np.flatnonzero(positive[2 * n, 0::2])
            if len(images):
                m = images[rng.integers(len(images))]
                target[2 * n], target[2 * n + 1] = 2 * m, 2 * m + 1
    else:
        for i in range(v):
            views = np.flatnonzero(positive[i])
            if len(views):
                target[i] = views[rng.integers(len(views))]
    return target


def compute_loss(inputs, md):
    """Outputs of a loss case: `loss` [1] and `grad_z` = dL/dz [V,D] (autograd, float64)."""
    cfg = LossConfig.from_metadata(md)
    z = f64(inputs["z"]).requires_grad_()
    loss = contrastive_loss(z, inputs["main"], inputs["aux"], inputs.get("spa_target"), cfg)
    loss.backward()
    return {"loss": np.array([loss.item()], dtype=np.float32), "grad_z": z.grad.numpy().astype(np.float32)}


# The batches of the loss cases: views, dim, classes, rotations (interleaved views, the R rotations
# of one base image adjacent, SPEC 1).
LOSS_SHAPES = {"small": (32, 16, 3, 4), "noaux": (48, 32, 4, 1), "large": (1024, 128, 10, 4)}
OFFICIAL = {"beta": "2.0", "floor": "1e-7"}
PAPER = {"beta": "2.5", "floor": "none"}
LOSS_CASES = {
    "loss-simclr-small": ("simclr", None, {"tau": "0.5", "floor": "1e-7"}),
    "loss-simclr-noaux": ("simclr", None, {"tau": "0.5", "floor": "1e-7"}),
    "loss-simclr-nofloor-small": ("simclr", None, {"tau": "0.2", "floor": "none"}),
    "loss-simclr-nofloor-noaux": ("simclr", None, {"tau": "0.2", "floor": "none"}),
    "loss-supcon-small": ("supcon", None, {"tau": "0.2", "floor": "none"}),
    "loss-supcon-noaux": ("supcon", None, {"tau": "0.2", "floor": "none"}),
    "loss-supcon-large": ("supcon", None, {"tau": "0.2", "floor": "none"}),
    "loss-ccm-official-small": ("ccm", None, OFFICIAL),
    "loss-ccm-paper-small": ("ccm", None, PAPER),
    "loss-ccm-paper-noaux": ("ccm", None, PAPER),
    "loss-spa-official-small": ("spa", "official", OFFICIAL),
    "loss-spa-paper-small": ("spa", "paper-sample", PAPER),
    "loss-spa-paper-noaux": ("spa", "paper-sample", PAPER),
    "loss-spa-expectation-small": ("spa", "paper-expectation", PAPER),
    "loss-spa-expectation-noaux": ("spa", "paper-expectation", PAPER),
    "loss-spa-expectation-large": ("spa", "paper-expectation", PAPER),
    "loss-mcl-official-small": ("mcl", "official", {**OFFICIAL, "spa_weight": "1.0"}),
    "loss-mcl-official-large": ("mcl", "official", {**OFFICIAL, "spa_weight": "1.0"}),
    "loss-mcl-paper-small": ("mcl", "paper-sample", {**PAPER, "spa_weight": "0.5"}),
    "loss-mcl-paper-noaux": ("mcl", "paper-sample", {**PAPER, "spa_weight": "0.5"}),
    "loss-mcl-paper-large": ("mcl", "paper-sample", {**PAPER, "spa_weight": "0.5"}),
}


def make_loss_batch(shape):
    """Inputs shared by the loss cases of one shape: labels per base image (small: classes
    [2, 0, 2, 1], so the views of classes 0 and 1 have an empty B+; noaux: one class with a single
    image; large: uniform), each base image expanded to its R adjacent rotations and 2 views; z =
    (class centre + image offset + view noise) * a per-view scale, so norms and similarities vary."""
    views, dim, classes, rotations = LOSS_SHAPES[shape]
    rng = case_rng("loss-batch-" + shape)
    base = views // 2 // rotations
    if shape == "small":
        base_y = np.array([2, 0, 2, 1])
    elif shape == "noaux":
        base_y = rng.permutation(np.r_[rng.integers(0, classes - 1, base - 1), classes - 1])
    else:
        base_y = rng.integers(0, classes, base)
    image_y = np.repeat(base_y, rotations)
    image_r = np.tile(np.arange(rotations), base)
    centre = rng.standard_normal((classes, dim)) + 0.5 * rng.standard_normal((rotations, dim))[:, None]
    image = centre[image_r, image_y] + 0.8 * rng.standard_normal((len(image_y), dim))
    z = np.repeat(image, 2, axis=0) + 0.5 * rng.standard_normal((views, dim))
    z *= rng.uniform(0.5, 4.0, (views, 1))
    return {"z": z.astype(np.float32), "main": np.repeat(image_y, 2).astype(np.int32),
            "aux": np.repeat(image_r, 2).astype(np.int32)}


def make_loss_case(name):
    """Metadata of LOSS_CASES[name] on the batch of its shape, plus SPA targets where SPA samples."""
    kind, spa, params = LOSS_CASES[name]
    shape = name.rsplit("-", 1)[1]
    views, dim, classes, rotations = LOSS_SHAPES[shape]
    md = {"kind": kind}
    if spa is not None:
        md["spa"] = spa
    md.update({"views": str(views), "dim": str(dim), "num_main": str(classes), "num_aux": str(rotations),
               "use_aux": "true" if rotations > 1 else "false", "tau": params.get("tau", "0.2")})
    if kind not in ("simclr", "supcon"):
        md.update({"alpha": "0.05", "beta": params["beta"]})
    if kind == "mcl":
        md["spa_weight"] = params["spa_weight"]
    md["floor"] = params["floor"]
    inputs = make_loss_batch(shape)
    cfg = LossConfig.from_metadata(md)
    if cfg.samples_targets:
        inputs["spa_target"] = sample_spa_targets(inputs["main"], inputs["aux"], cfg, case_rng(name))
    return inputs, md


# ----------------------------------------------------------------------------------------------
# Supervised objectives (the baselines of Tables 1 and 3)

# name: (kind, images, views per image, rotations)
SUPERVISED_CASES = {
    "supervised-ce": ("ce", 24, 1, 1),
    "supervised-ce-rotation": ("ce-rotation", 8, 1, 4),
    "supervised-ce-simclr": ("ce-simclr", 16, 2, 1),
}
SUPERVISED_CLASSES = 10


def make_supervised_case(name):
    """Logits of the class head (scaled normals, so some rows are confident), labels, and for
    ce-rotation the rotation head's logits (rows: image, rotation r = row % 4), for ce-simclr the
    projections z of two views per image (interleaved)."""
    kind, images, per, rotations = SUPERVISED_CASES[name]
    rng = case_rng(name)
    rows = images * per * rotations
    y = rng.integers(0, SUPERVISED_CLASSES, images)
    main = np.repeat(y, per * rotations).astype(np.int32)
    aux = np.tile(np.repeat(np.arange(rotations), per), images).astype(np.int32)
    logits = rng.standard_normal((rows, SUPERVISED_CLASSES)) * rng.uniform(0.5, 4.0, (rows, 1))
    inputs = {"logits": logits.astype(np.float32), "main": main, "aux": aux}
    md = {"kind": kind, "views": str(rows), "classes": str(SUPERVISED_CLASSES)}
    if kind == "ce-rotation":
        inputs["rotation_logits"] = (rng.standard_normal((rows, 4)) * 2).astype(np.float32)
        md["rotation_weight"] = "0.5"
    if kind == "ce-simclr":
        dim = 16
        image = rng.standard_normal((images, dim))
        inputs["z"] = ((np.repeat(image, 2, axis=0) + 0.5 * rng.standard_normal((rows, dim)))
                       * rng.uniform(0.5, 4.0, (rows, 1))).astype(np.float32)
        md.update({"simclr_weight": "0.1", "tau": "0.5", "floor": "1e-7", "dim": str(dim)})
    return inputs, md


def compute_supervised(inputs, md):
    """`loss` [1] and the gradients of the logits (and of rotation_logits / z) by autograd, float64:
    ce = mean CE; ce-rotation = mean CE of the upright rows + w * mean rotation CE of all rows;
    ce-simclr = mean CE + lambda * SimCLR(z) (the paper's eq. 36)."""
    kind = md["kind"]
    logits = f64(inputs["logits"]).requires_grad_()
    main = torch.as_tensor(inputs["main"], dtype=torch.long)
    aux = torch.as_tensor(inputs["aux"], dtype=torch.long)
    out = {}
    if kind == "ce":
        loss = F.cross_entropy(logits, main)
    elif kind == "ce-rotation":
        rot = f64(inputs["rotation_logits"]).requires_grad_()
        upright = aux == 0
        loss = F.cross_entropy(logits[upright], main[upright]) + float(md["rotation_weight"]) * F.cross_entropy(rot, aux)
    else:
        z = f64(inputs["z"]).requires_grad_()
        cfg = LossConfig.from_metadata({"kind": "simclr", "tau": md["tau"], "floor": md["floor"], "use_aux": "false"})
        loss = F.cross_entropy(logits, main) + float(md["simclr_weight"]) * contrastive_loss(
            z, inputs["main"], inputs["aux"], None, cfg)
    loss.backward()
    out["loss"] = np.array([loss.item()], dtype=np.float32)
    out["grad_logits"] = logits.grad.numpy().astype(np.float32)
    if kind == "ce-rotation":
        out["grad_rotation_logits"] = rot.grad.numpy().astype(np.float32)
    if kind == "ce-simclr":
        out["grad_z"] = z.grad.numpy().astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------
# Network (SPEC 5)

ARCH_BLOCKS = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}
MODEL_LOSS = "sum(z*dloss_dz) + 0.1*sum(feature^2), train-mode BN"


class CifarResNet(nn.Module):
    """torchvision BasicBlock ResNet with the CIFAR stem: 3x3 conv (stride 1, no bias), BN, ReLU,
    no max-pool; stages of width w, 2w, 4w, 8w with strides 1, 2, 2, 2 and a 1x1 conv + BN
    shortcut where stride or width changes; global average pool -> feature [8w]."""

    def __init__(self, blocks, width):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        cin = width
        for stage, count in enumerate(blocks):
            cout = width << stage
            layer = []
            for b in range(count):
                stride = 2 if stage > 0 and b == 0 else 1
                shortcut = None
                if stride != 1 or cin != cout:
                    shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                layer.append(BasicBlock(cin, cout, stride, shortcut))
                cin = cout
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class MCLNet(nn.Module):
    """Encoder `enc` + projector Linear(8w, hidden) -> ReLU -> Linear(hidden, projection);
    forward returns (feature, z). Parameter names are SPEC 5's."""

    def __init__(self, blocks, width, hidden, projection, bn_momentum, bn_eps):
        super().__init__()
        self.enc = CifarResNet(blocks, width)
        self.projector = nn.Sequential(nn.Linear(8 * width, hidden), nn.ReLU(), nn.Linear(hidden, projection))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = bn_momentum, bn_eps

    def forward(self, x):
        feature = self.enc(x)
        return feature, self.projector(feature)


def build_model(md):
    """The float64 network described by a model case's metadata, with SPEC 5's initialisation:
    kaiming-normal(fan_out, relu) for every conv but the stem; stem and Linear layers keep PyTorch's
    default; BN weight 1, bias 0."""
    model = MCLNet([int(b) for b in md["blocks"].split(",")], int(md["width"]), int(md["projector_hidden"]),
                   int(md["projection_dim"]), float(md["bn_momentum"]), float(md["bn_eps"]))
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and name != "enc.conv1":
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return model.double()


def model_state(model):
    """name -> tensor of every parameter and running statistic (num_batches_tracked excluded)."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def compute_model(inputs, md):
    """Outputs of a model case (float64): eval-mode `eval.feature`, `eval.z` (running statistics);
    train-mode `train.feature`, `train.z`, `loss` = sum(z * dloss_dz) + 0.1 sum(feature^2) and its
    gradients `grad.<name>`; `after.<name>` = running statistics after that train-mode forward
    (SPEC 5: normalise with the biased batch variance, running <- (1-m) running + m batch with the
    unbiased variance n/(n-1))."""
    model = build_model(md)
    state = model_state(model)
    missing = set(state) - {k[len("param."):] for k in inputs if k.startswith("param.")}
    if missing:
        raise KeyError(f"missing parameters {sorted(missing)}")
    model.load_state_dict({k: f64(inputs["param." + k]) for k in state}, strict=False)
    x, dz = f64(inputs["input"]), f64(inputs["dloss_dz"])
    out = {}
    model.eval()
    with torch.no_grad():
        out["eval.feature"], out["eval.z"] = model(x)
    model.train()
    feature, z = model(x)
    loss = (z * dz).sum() + 0.1 * (feature ** 2).sum()
    loss.backward()
    out.update({"train.feature": feature, "train.z": z, "loss": loss.reshape(1)})
    out.update({"grad." + k: p.grad for k, p in model.named_parameters()})
    out.update({"after." + k: b for k, b in model.named_buffers() if k.endswith(("running_mean", "running_var"))})
    return {k: v.detach().numpy().astype(np.float32) for k, v in out.items()}


def model_gradients(inputs, md, perturb=0.0, rng=None, dtype=torch.float64):
    """Parameter gradients of the model case's train-mode loss, with every parameter optionally
    scaled by (1 + perturb * N(0, 1)) first (running statistics untouched)."""
    model = build_model(md).to(dtype)
    state = {}
    for k in model_state(model):
        v = torch.as_tensor(inputs["param." + k]).to(dtype)
        if perturb and not k.endswith(("running_mean", "running_var")):
            v = v * (1 + perturb * torch.as_tensor(rng.standard_normal(v.shape)).to(dtype))
        state[k] = v
    model.load_state_dict(state, strict=False)
    model.train()
    feature, z = model(torch.as_tensor(inputs["input"]).to(dtype))
    ((z * torch.as_tensor(inputs["dloss_dz"]).to(dtype)).sum() + 0.1 * (feature ** 2).sum()).backward()
    return {k: p.grad.double().numpy() for k, p in model.named_parameters()}


def float32_sensitivity(inputs, md, rng):
    """How far float32 arithmetic can move this case's gradients: the largest change (relative to
    each tensor's largest element) under float32 evaluation and under parameter perturbations of
    a few float32 ulps (1e-7 relative). A ReLU or a BatchNorm input within rounding distance of
    its kink makes a float32 implementation disagree with the float64 reference by percents."""
    ref = model_gradients(inputs, md)
    trials = [model_gradients(inputs, md, dtype=torch.float32)]
    trials += [model_gradients(inputs, md, perturb=1e-7, rng=rng) for _ in range(4)]
    return max(float(np.abs(t[k] - ref[k]).max() / np.abs(ref[k]).max()) for t in trials for k in ref)


def make_model_case(name):
    """Width 8, projector 32 -> 16, batch 6. Parameters: SPEC 5 init, then BN weight U(0.5, 1.5),
    bias U(-0.2, 0.2) and running statistics of a calibration batch (train-mode forward with
    cumulative averaging), so that eval mode differs from train mode but stays well scaled.
    Draws again (same seed stream) until the case is well conditioned in float32
    (`float32_sensitivity` < 1e-4, a tenth of the test's tolerance)."""
    arch = name.split("-")[1]
    md = {"arch": arch, "blocks": ",".join(map(str, ARCH_BLOCKS[arch])), "width": "8", "projector_hidden": "32",
          "projection_dim": "16", "batch": "6", "bn_momentum": "0.1", "bn_eps": "1e-05", "loss": MODEL_LOSS}
    rng = case_rng(name)
    for attempt in range(50):
        seed_torch(rng)
        model = build_model(md)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        with torch.no_grad():
            for bn in bns:
                bn.weight.copy_(f64(rng.uniform(0.5, 1.5, bn.num_features)))
                bn.bias.copy_(f64(rng.uniform(-0.2, 0.2, bn.num_features)))
                bn.momentum = None
            model.train()
            model(f64(rng.uniform(0, 1, (16, 3, 32, 32))))
        inputs = {"param." + k: v.numpy().astype(np.float32) for k, v in model_state(model).items()}
        inputs["input"] = rng.uniform(0, 1, (6, 3, 32, 32)).astype(np.float32)
        inputs["dloss_dz"] = rng.standard_normal((6, 16)).astype(np.float32)
        if float32_sensitivity(inputs, md, rng) < 1e-4:
            return inputs, md
    raise RuntimeError(f"{name}: no well-conditioned draw in 50 attempts")


# ----------------------------------------------------------------------------------------------
# Optimiser (SPEC 6)

ODIN_MD = {"classes": "4", "temperature": "1000", "epsilon": "0.0014"}


def make_odin_case(name):
    """The network of model-resnet18-w8 (its parameters, calibrated running statistics and input)
    with a 4-class classifier on the feature (PyTorch's default Linear init from the case's seed)."""
    inputs, md = make_model_case("model-resnet18-w8")
    rng = case_rng(name)
    seed_torch(rng)
    head = nn.Linear(8 * int(md["width"]), int(ODIN_MD["classes"]))
    inputs = {k: v for k, v in inputs.items() if k != "dloss_dz"}
    inputs["param.classifier.weight"] = head.weight.detach().numpy().astype(np.float32) * 4
    inputs["param.classifier.bias"] = head.bias.detach().numpy().astype(np.float32)
    return inputs, {**md, **ODIN_MD, "loss": "ODIN on eval-mode logits"}


def compute_odin(inputs, md):
    """ODIN (Liang et al. 2017) in float64, eval mode: `logits`; y = argmax; `input_grad` =
    d/dx sum_i -log softmax(logits_i / T)[y_i]; x' = x - eps * (2 [input_grad >= 0] - 1) (the
    authors' torch.ge); `perturbed_logits`; `score` = max softmax(perturbed_logits / T)."""
    model = build_model(md)
    state = model_state(model)
    model.load_state_dict({k: f64(inputs["param." + k]) for k in state}, strict=False)
    head = nn.Linear(8 * int(md["width"]), int(md["classes"])).double()
    head.weight.data, head.bias.data = f64(inputs["param.classifier.weight"]), f64(inputs["param.classifier.bias"])
    model.eval()
    T, eps = float(md["temperature"]), float(md["epsilon"])
    x = f64(inputs["input"]).requires_grad_()
    logits = head(model(x)[0])
    y = logits.argmax(dim=1)
    F.cross_entropy(logits / T, y, reduction="sum").backward()
    step = torch.ge(x.grad, 0).double() * 2 - 1
    with torch.no_grad():
        perturbed = head(model(x - eps * step)[0])
        score = torch.softmax(perturbed / T, dim=1).max(dim=1).values
    out = {"logits": logits.detach(), "input_grad": x.grad, "perturbed_logits": perturbed, "score": score}
    return {k: v.numpy().astype(np.float32) for k, v in out.items()}


def cosine_lr(step, base_lr, eta_min, total_steps):
    """lr_t = eta_min + (lr - eta_min)(1 + cos(pi t / T)) / 2 (per step, no warm-up)."""
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * step / total_steps)) / 2


def compute_optim(inputs, md):
    """Outputs of the optimiser case: PyTorch's SGD (momentum mu, Nesterov, weight decay wd) in
    float64 driven by `grads`: g <- g + wd p; b <- mu b + g (b = g first); p <- p - lr_t (g + mu b),
    lr_t the cosine schedule; `params` [steps, n] after each step, `lr` [steps]."""
    p = nn.Parameter(f64(inputs["param0"]))
    opt = torch.optim.SGD([p], lr=float(md["base_lr"]), momentum=float(md["momentum"]),
                          nesterov=md["nesterov"] == "true", weight_decay=float(md["weight_decay"]))
    params, lrs = [], []
    for t, g in enumerate(inputs["grads"]):
        lr = cosine_lr(t, float(md["base_lr"]), float(md["eta_min"]), int(md["total_steps"]))
        opt.param_groups[0]["lr"] = lr
        p.grad = f64(g)
        opt.step()
        params.append(p.detach().numpy().copy())
        lrs.append(lr)
    return {"params": np.array(params, dtype=np.float32), "lr": np.array(lrs, dtype=np.float32)}


def make_optim_case(name):
    """50 parameters, 5 steps at batch 1024 (base lr 0.3 * 1024 / 256 = 1.2, eta_min 5e-4 lr)."""
    base_lr = 0.3 * 1024 / 256
    md = {"optimizer": "sgd", "momentum": "0.9", "nesterov": "true", "weight_decay": "1e-06",
          "base_lr": str(base_lr), "eta_min": str(5e-4 * base_lr), "schedule": "cosine per step", "total_steps": "5"}
    rng = case_rng(name)
    return {"param0": rng.standard_normal(50).astype(np.float32),
            "grads": rng.standard_normal((5, 50)).astype(np.float32)}, md


# ----------------------------------------------------------------------------------------------
# OOD metrics (SPEC 9)

def compute_metrics(inputs, md):
    """Percent metrics with in-distribution positive and score s (higher = more in-distribution):
    AUROC = roc_auc_score (ties count one half); AUPR-In = average_precision_score(in, s);
    AUPR-Out = average_precision_score(ood, -s); FPR@95TPR = fpr[first index with tpr >= 0.95] of
    roc_curve(drop_intermediate=False)."""
    ind, ood = inputs["ind_scores"].astype(np.float64), inputs["ood_scores"].astype(np.float64)
    s = np.r_[ind, ood]
    is_in = np.r_[np.ones(len(ind)), np.zeros(len(ood))]
    fpr, tpr, _ = roc_curve(is_in, s, drop_intermediate=False)
    values = {"auroc": roc_auc_score(is_in, s), "aupr_in": average_precision_score(is_in, s),
              "aupr_out": average_precision_score(1 - is_in, -s), "fpr95": fpr[np.argmax(tpr >= 0.95)]}
    return {k: np.array([100 * v], dtype=np.float64) for k, v in values.items()}


def make_metrics_case(name):
    """balanced: 1000 vs 1000 overlapping Gaussians; perfect: separated (50 vs 80); unbalanced-ties:
    700 vs 2600 rounded to 0.1 (many ties within and across the two sets)."""
    rng = case_rng(name)
    kind = name[len("metrics-"):]
    if kind == "balanced":
        ind, ood = rng.normal(1.0, 1.0, 1000), rng.normal(0.0, 1.2, 1000)
    elif kind == "perfect":
        ind, ood = rng.normal(20.0, 1.0, 50), rng.normal(-20.0, 1.2, 80)
    else:
        ind, ood = np.round(rng.normal(1.0, 1.0, 700), 1), np.round(rng.normal(0.0, 1.2, 2600), 1)
    md = {"higher_is_in_distribution": "true", "percent": "true"}
    return {"ind_scores": ind.astype(np.float32), "ood_scores": ood.astype(np.float32)}, md


# ----------------------------------------------------------------------------------------------
# Gaussians and Self-Ensemble Inference (SPEC 8)

VIEW_ROTATION = "v // (views / num_aux); 1-way uses rotation 0"


def view_rotation(v, views, num_aux):
    """The rotation whose Gaussians score view v: 0 for 1-way, else v // (views / num_aux)
    (4-way: v; 8-way: v // 2, odd views being the flipped ones)."""
    return 0 if views == 1 else v // (views // num_aux)


def compute_sei(inputs, md):
    """One Gaussian per (y, r) in float64: mean, covariance = unbiased (n-1) + ridge I; distance
    D[t,v,c] = sqrt((x-mu)^T Sigma^-1 (x-mu)) via Cholesky (|L^-1 (x-mu)|) against the Gaussians
    of the view's rotation. Aggregations (score = -aggregated distance): avg A = mean_v D, pred =
    argmin A; max: pred = class of the smallest D, score = -min D; wavg A = V / sum_v 1/D (harmonic
    mean), pred = argmin A."""
    classes, rotations, views = int(md["num_main"]), int(md["num_aux"]), int(md["views"])
    ridge = float(md["ridge"])
    x = f64(inputs["train_features"])
    y, r = inputs["train_main"], inputs["train_aux"]
    dim = x.shape[1]
    means = torch.zeros(classes, rotations, dim, dtype=torch.float64)
    covs = torch.zeros(classes, rotations, dim, dim, dtype=torch.float64)
    for c in range(classes):
        for k in range(rotations):
            group = x[torch.from_numpy((y == c) & (r == k))]
            means[c, k] = group.mean(0)
            centred = group - means[c, k]
            covs[c, k] = centred.T @ centred / (len(group) - 1) + ridge * torch.eye(dim, dtype=torch.float64)
    chol = torch.linalg.cholesky(covs)
    test = f64(inputs["test_views"])
    dist = torch.zeros(test.shape[0], views, classes, dtype=torch.float64)
    for v in range(views):
        k = view_rotation(v, views, rotations)
        diff = (test[:, v, None, :] - means[None, :, k, :]).unsqueeze(-1)  # [T, C, d, 1]
        white = torch.linalg.solve_triangular(chol[None, :, k], diff, upper=False)
        dist[:, v, :] = white.squeeze(-1).norm(dim=-1)
    avg = dist.mean(1)
    wavg = views / (1 / dist).sum(1)
    closest = dist.min(1).values
    out = {"means": means, "covariances": covs, "distances": dist}
    for agg, a in (("avg", avg), ("max", closest), ("wavg", wavg)):
        pred = a.argmin(1)
        out[agg + ".pred"] = pred.to(torch.int32)
        out[agg + ".score"] = -a.gather(1, pred[:, None])[:, 0]
    return {k: v.numpy() for k, v in out.items()}


def make_sei_train():
    """Shared training features of the sei cases: 3 classes x 4 rotations, 40 samples each of a
    Gaussian with random mean and covariance, dim 6, in shuffled order."""
    rng = case_rng("sei-train")
    classes, rotations, dim, per = 3, 4, 6, 40
    means = 1.5 * rng.standard_normal((classes, rotations, dim))
    factors = rng.standard_normal((classes, rotations, dim, dim)) / np.sqrt(dim)
    labels = [(c, k) for c in range(classes) for k in range(rotations) for _ in range(per)]
    labels = [labels[i] for i in rng.permutation(len(labels))]
    feats = np.array([means[c, k] + factors[c, k] @ rng.standard_normal(dim) for c, k in labels])
    return means, factors, {"train_features": feats.astype(np.float32),
                            "train_main": np.array([c for c, _ in labels], dtype=np.int32),
                            "train_aux": np.array([k for _, k in labels], dtype=np.int32)}


def make_sei_case(name):
    """30 test images; view v is drawn from the Gaussian of (true class, its rotation) with 1.5x
    the spread, and with probability 0.2 from another class's Gaussian, so the aggregations disagree."""
    views = int(name[len("sei-"):-len("way")])
    means, factors, inputs = make_sei_train()
    classes, rotations, dim = means.shape
    md = {"num_main": str(classes), "num_aux": str(rotations), "views": str(views), "dim": str(dim),
          "ridge": "1e-06", "covariance": "unbiased (n-1) + ridge*I", "distance": "sqrt Mahalanobis",
          "view_rotation": VIEW_ROTATION}
    rng = case_rng(name)
    tests = 30
    test_main = rng.integers(0, classes, tests)
    test_views = np.zeros((tests, views, dim))
    for t in range(tests):
        for v in range(views):
            k = view_rotation(v, views, rotations)
            c = rng.integers(0, classes) if rng.uniform() < 0.2 else test_main[t]
            test_views[t, v] = means[c, k] + 1.5 * factors[c, k] @ rng.standard_normal(dim)
    inputs.update({"test_views": test_views.astype(np.float32), "test_main": test_main.astype(np.int32)})
    return inputs, md


# ----------------------------------------------------------------------------------------------
# Augmentation operations (SPEC 7)

def parse_crop(text):
    """'top=3,left=5,height=20,width=24' -> dict of ints."""
    return {k: int(v) for k, v in (part.split("=") for part in text.split(","))}


def compute_augment(inputs, md):
    """torchvision's deterministic ops on float64 [N,3,H,W] images in [0,1]: brightness f x;
    contrast f x + (1-f) mean(L); saturation f x + (1-f) L (each clamped to [0,1]); hue: RGB -> HSV,
    H <- (H + f) mod 1, back (torchvision's _rgb2hsv/_hsv2rgb, called directly because adjust_hue
    casts to float32); grayscale L = 0.2989 R + 0.587 G + 0.114 B on 3 channels; resized_crop of
    the metadata box to HxW (bilinear, antialias as RandomResizedCrop; upsampling only); hflip; rot90
    = one quarter turn counter-clockwise as displayed (torch.rot90 over (H, W))."""
    x = f64(inputs["input"])
    crop = parse_crop(md["crop"])
    h, s, v = TFT._rgb2hsv(x).unbind(dim=-3)
    hue = TFT._hsv2rgb(torch.stack(((h + float(md["hue"])) % 1.0, s, v), dim=-3))
    out = {"brightness": TF.adjust_brightness(x, float(md["brightness"])),
           "contrast": TF.adjust_contrast(x, float(md["contrast"])),
           "saturation": TF.adjust_saturation(x, float(md["saturation"])),
           "hue": hue,
           "grayscale": TF.rgb_to_grayscale(x, num_output_channels=3),
           "resized_crop": TF.resized_crop(x, crop["top"], crop["left"], crop["height"], crop["width"],
                                           list(x.shape[-2:]), InterpolationMode.BILINEAR, antialias=True),
           "hflip": TF.hflip(x),
           "rot90": torch.rot90(x, 1, dims=(-2, -1))}
    return {k: v.numpy().astype(np.float32) for k, v in out.items()}


def make_augment_case(name):
    """5 images 3x32x32: two uniform, one quantised to k/255 (ties between channels), one with
    grey (r = g = b), black and white pixels, one smooth colour pattern."""
    rng = case_rng(name)
    uniform = rng.uniform(0, 1, (3, 3, 32, 32))
    quantised = rng.integers(0, 256, (3, 32, 32)) / 255
    special = uniform[2].copy()
    special[:, :8] = rng.uniform(0, 1, (8, 32))
    special[:, 8:12] = rng.integers(0, 2, (3, 4, 32))
    yy, xx = np.meshgrid(np.arange(32) / 31, np.arange(32) / 31, indexing="ij")
    smooth = np.stack([0.5 + 0.5 * np.sin(6 * xx + 2 * yy), 0.5 + 0.5 * np.cos(4 * yy - 3 * xx), xx * yy])
    images = np.stack([uniform[0], uniform[1], quantised, special, smooth])
    md = {"brightness": "1.3", "contrast": "0.7", "saturation": "1.25", "hue": "-0.07",
          "crop": "top=3,left=5,height=20,width=24"}
    return {"input": images.astype(np.float32)}, md


# ----------------------------------------------------------------------------------------------
# Cases, tolerances, generation and checking

# prefix -> (make inputs + metadata, compute outputs, tolerance rule per output).
# Rules: ("rel", tol) elementwise |a-b| / |b|; ("max", tol) max|a-b| / max|b|; ("exact", 0).
KINDS = {
    "loss-": (make_loss_case, compute_loss, lambda k: ("rel", 1e-5) if k == "loss" else ("max", 1e-4)),
    "model-": (make_model_case, compute_model, lambda k: ("max", 1e-3)),
    "optim-": (make_optim_case, compute_optim, lambda k: ("rel", 1e-5) if k == "lr" else ("max", 1e-5)),
    "metrics-": (make_metrics_case, compute_metrics, lambda k: ("rel", 1e-5)),
    "sei-": (make_sei_case, compute_sei,
             lambda k: ("exact", 0) if k.endswith(".pred") else ("max", 1e-5) if k in ("means", "covariances")
             else ("rel", 1e-5)),
    "augment-": (make_augment_case, compute_augment, lambda k: ("max", 1e-4)),
    "odin-": (make_odin_case, compute_odin, lambda k: ("rel", 1e-4) if k == "score" else ("max", 1e-3)),
    "supervised-": (make_supervised_case, compute_supervised, lambda k: ("rel", 1e-5) if k == "loss" else ("max", 1e-4)),
}
CASES = sorted([*LOSS_CASES, "model-resnet18-w8", "model-resnet34-w8", "optim-sgd-nesterov-cosine",
                "metrics-balanced", "metrics-perfect", "metrics-unbalanced-ties",
                "sei-1way", "sei-4way", "sei-8way", "augment-ops", *SUPERVISED_CASES, "odin-resnet18-w8"])


GOLDEN_README = """\
# Golden vectors

Written by `Tests/reference/make_golden.py` (do not edit; regenerate, see `Tests/reference/README.md`).
Inputs are drawn from the script's fixed seed and are float32-representable; outputs are computed in
float64 with PyTorch, torchvision and scikit-learn from the definitions of SPEC.md. Every file is a
safetensors file (an 8-byte little-endian header length, a JSON header, raw little-endian data);
hyper-parameters are in the header's `__metadata__` (all values are strings). `CASES.txt` lists
the cases, one per line.

Tolerances: losses and metrics 1e-5 relative; gradients 1e-4 relative to the largest element;
model outputs and gradients 1e-3 relative to the largest element; SEI predictions exactly.

| file | tensors | metadata |
|---|---|---|
| `loss-<kind>-<shape>` | `z` [2N,D] f32, `main`/`aux` [2N] i32 (views interleaved, the rotations of a base image adjacent), `spa_target` [2N] i32 (-1 = empty B+) where SPA samples, `loss` [1], `grad_z` [2N,D] (dL/dz, unnormalised z) | kind (simclr, supcon, ccm, spa, mcl), spa (official, paper-sample, paper-expectation), tau, alpha, beta, spa_weight, floor ("1e-7" or "none"), use_aux, num_main, num_aux, views, dim |
| `model-resnet18-w8`, `model-resnet34-w8` | `input` [6,3,32,32]; `param.<name>` (PyTorch names of SPEC 5, running statistics included); `dloss_dz`; train-mode `train.feature`, `train.z`, `loss`; eval-mode `eval.feature`, `eval.z`; `grad.<name>` of loss = sum(z * dloss_dz) + 0.1 * sum(feature^2) in train mode; `after.<name>` running statistics after that train-mode forward | arch, blocks, width, projector_hidden, projection_dim, batch, bn_momentum, bn_eps, loss |
| `optim-sgd-nesterov-cosine` | `param0` [50], `grads` [5,50], `params` [5,50] after each step, `lr` [5] used at each step | optimizer, momentum, nesterov, weight_decay, base_lr, eta_min, schedule, total_steps |
| `metrics-<case>` | `ind_scores`, `ood_scores` f32; `auroc`, `aupr_in`, `aupr_out`, `fpr95` [1] f64, percent | higher_is_in_distribution, percent |
| `sei-<V>way` | `train_features` [n,d], `train_main`, `train_aux`; `means` [C,R,d], `covariances` [C,R,d,d] (ridge included); `test_views` [T,V,d], `test_main`; `distances` [T,V,C]; `<agg>.pred`, `<agg>.score` for agg in avg, max, wavg | num_main, num_aux, views, dim, ridge, covariance, distance, view_rotation |
| `supervised-ce`, `supervised-ce-rotation`, `supervised-ce-simclr` | `logits` [V,10] f32, `main`/`aux` [V] i32 (ce-rotation: rows image-major, rotation r = row % 4), `rotation_logits` [V,4] (ce-rotation), `z` [V,16] (ce-simclr, two views per image interleaved); `loss` [1], `grad_logits`, `grad_rotation_logits`, `grad_z` | kind (ce, ce-rotation, ce-simclr), views, classes, rotation_weight, simclr_weight, tau, floor, dim |
| `odin-resnet18-w8` | the `param.*` and `input` of model-resnet18-w8 plus `param.classifier.weight` [4,64], `param.classifier.bias`; eval-mode `logits`, `input_grad` (d/dx of sum -log softmax(logits/T)[argmax]), `perturbed_logits` after x' = x - eps sign, `score` = max softmax(perturbed/T) | the model's keys, classes, temperature, epsilon |
| `augment-ops` | `input` [5,3,32,32] in [0,1]; `brightness`, `contrast`, `saturation`, `hue`, `grayscale` (3 channels, 0.2989 R + 0.587 G + 0.114 B), `resized_crop` (bilinear to 32x32), `hflip`, `rot90` (one quarter turn counter-clockwise) | brightness, contrast, saturation, hue, crop |
"""


def kind_of(name):
    """The KINDS prefix of a case name."""
    return next(prefix for prefix in KINDS if name.startswith(prefix))


def generate(out_dir):
    """Writes every case of CASES, the manifest CASES.txt and README.md into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in CASES:
        make, compute, _ = KINDS[kind_of(name)]
        inputs, md = make(name)
        write_safetensors(out_dir / f"{name}.safetensors", {**inputs, **compute(inputs, md)}, md)
        print(f"wrote {name}")
    (out_dir / "CASES.txt").write_text("".join(f"{name}\n" for name in CASES))
    (out_dir / "README.md").write_text(GOLDEN_README)


def error(rule, got, want):
    """The error of `got` against the stored `want` under a tolerance rule (see KINDS)."""
    if rule == "exact":
        return 0.0 if np.array_equal(got, want) else math.inf
    got, want = got.astype(np.float64), want.astype(np.float64)
    if not np.all(np.isfinite(got)):
        return math.inf
    diff = np.abs(got - want)
    if rule == "rel":
        return float(np.max(np.where(diff == 0, 0.0, diff / np.maximum(np.abs(want), 1e-300)), initial=0.0))
    return float(diff.max(initial=0.0) / max(np.abs(want).max(initial=0.0), 1e-300))


def check_case(path, name):
    """Recomputes a case's outputs from its stored inputs; returns (max rel err, list of problems)."""
    _, compute, tolerance = KINDS[kind_of(name)]
    stored, md = read_safetensors(path)
    outputs = compute(stored, md)
    worst, problems = 0.0, []
    for key, got in outputs.items():
        if key not in stored:
            problems.append(f"{key} missing")
            continue
        if got.shape != stored[key].shape:
            problems.append(f"{key} shape {list(stored[key].shape)}, expected {list(got.shape)}")
            continue
        rule, tol = tolerance(key)
        err = error(rule, got, stored[key])
        worst = max(worst, err)
        if not err <= tol:
            problems.append(f"{key} {rule} err {err:.3e} > {tol:g}")
    return worst, problems


def check(folder):
    """Checks every case of folder/CASES.txt; returns the number of failures."""
    failures = 0
    for name in (folder / "CASES.txt").read_text().split():
        try:
            worst, problems = check_case(folder / f"{name}.safetensors", name)
        except Exception as e:  # a missing input or unreadable file fails the case, not the run
            problems = [f"{type(e).__name__}: {e}"]
        if problems:
            failures += 1
            more = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
            print(f"check {name} FAIL {'; '.join(problems[:4])}{more}")
        else:
            print(f"check {name} ok {worst:.3e}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write (default Tests/golden)")
    parser.add_argument("--check", type=Path, metavar="DIR", help="check DIR's cases instead of writing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if args.check is not None:
        sys.exit(1 if check(args.check) else 0)
    start = time.perf_counter()
    generate(args.out)
    print(f"generated {len(CASES)} cases in {args.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
