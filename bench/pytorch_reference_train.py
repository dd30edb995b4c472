"""An independent PyTorch + torchvision run of the cpu-* budget (docs/results.md), to check that
mcl-dist's early learning curves are what PyTorch gets from the same losses, model and data.

Same definitions as SPEC 1-7 (interleaved views, (image, rotation) pairs with the 4 rotations of an
image adjacent, CCM/SPA official, SupCon L_out, NT-Xent; ResNet-18 width 16, projector 512 -> 128;
SGD Nesterov, wd 1e-6, per-step cosine; torchvision augmentation), written from the spec, not
from mcl-dist's code. Prints one JSON line per `--every` steps with the mean loss since the last.

    bench/.venv/bin/python bench/pytorch_reference_train.py --loss mcl --steps 156
"""
import argparse, json, math, os, random, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
import torchvision.transforms as T
import torchvision.transforms.functional as TF

from pytorch_resnet import cifar_resnet

p = argparse.ArgumentParser()
p.add_argument("--loss", choices=["simclr", "supcon", "ccm", "mcl"], default="mcl")
p.add_argument("--data", default="data/raw/cifar10/train")
p.add_argument("--per-class", type=int, default=1000)
p.add_argument("--batch", type=int, default=256, help="(image, rotation) pairs")
p.add_argument("--epochs", type=int, default=1, help="sets the cosine schedule length")
p.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = all)")
p.add_argument("--lr", type=float, default=0.3)
p.add_argument("--width", type=int, default=16)
p.add_argument("--tau", type=float, default=0.2); p.add_argument("--alpha", type=float, default=0.05)
p.add_argument("--beta", type=float, default=2.0)
p.add_argument("--threads", type=int, default=2); p.add_argument("--seed", type=int, default=0)
p.add_argument("--every", type=int, default=10)
p.add_argument("--fixed", action="store_true", help="augment one batch once and train on it every step (network + loss only)")
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed); random.seed(a.seed); np.random.seed(a.seed)

classes = sorted(os.listdir(a.data))
images, labels = [], []
for y, c in enumerate(classes):
    files = sorted(os.listdir(os.path.join(a.data, c)))[: a.per_class]
    for f in files:
        images.append(Image.open(os.path.join(a.data, c, f)).convert("RGB")); labels.append(y)
N = len(images)
R = 4
aug = T.Compose([T.RandomHorizontalFlip(), T.RandomResizedCrop(32, scale=(0.08, 1.0)),
                 T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2), T.ToTensor()])

enc = cifar_resnet([2, 2, 2, 2], a.width)
# SPEC 5 init: torchvision's kaiming-normal (fan_out, relu) on the block convolutions, PyTorch's
# default on the stem conv and the Linear layers (the released code replaces the stem after init).
for mod in enc.modules():
    if isinstance(mod, nn.Conv2d) and mod is not enc[0]:
        nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
net = nn.Sequential(enc, nn.Linear(8 * a.width, 512), nn.ReLU(), nn.Linear(512, 128))
steps_per_epoch = N * R // a.batch
total = steps_per_epoch * a.epochs
opt = torch.optim.SGD(net.parameters(), lr=a.lr * a.batch / 256, momentum=0.9, nesterov=True, weight_decay=1e-6)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total, eta_min=5e-4 * a.lr * a.batch / 256)


def loss_fn(z, y, r):
    n = z.shape[0]
    u = F.normalize(z, dim=1)
    sim = (u @ u.t()).clamp(min=1e-7)
    idx = torch.arange(n)
    partner = idx ^ 1
    eye = torch.eye(n, dtype=torch.bool)
    same_y = y[:, None] == y[None, :]
    same_r = r[:, None] == r[None, :]
    parent = idx // 2
    same_parent = parent[:, None] == parent[None, :]
    if a.loss == "simclr":
        logits = (sim / a.tau).masked_fill(eye, -1e9)
        return F.cross_entropy(logits, partner), 0.0
    if a.loss == "supcon":
        logits = (sim / a.tau).masked_fill(eye, -1e9)
        logp = logits - torch.logsumexp(logits, 1, keepdim=True)
        pos = same_y & ~eye
        return (-(logp * pos).sum(1) / pos.sum(1)).mean(), 0.0
    M = torch.full((n, n), 1 / a.tau)
    M[same_y & same_r & ~same_parent] = a.alpha
    M[same_y & ~same_r] = a.beta
    logits = (sim * M).masked_fill(eye, -1e9)
    ccm = F.cross_entropy(logits, partner)
    if a.loss == "ccm":
        return ccm, 0.0
    # SPA official: image-level targets among other images of the same (y, r).
    t = torch.empty(n, dtype=torch.long)
    imgs = n // 2
    key = (y[::2] * R + r[::2]).tolist()
    for k in range(imgs):
        cands = [m for m in range(imgs) if key[m] == key[k] and m != k]
        if not cands:
            t[2 * k] = -1; t[2 * k + 1] = -1
            continue
        m = random.choice(cands)
        t[2 * k] = 2 * m; t[2 * k + 1] = 2 * m + 1
    valid = t >= 0
    tt = t.clamp(min=0)
    M2 = M.clone()
    M2[idx, tt] = torch.where(valid, torch.full((n,), 1 / a.tau), M2[idx, tt])
    logits2 = sim * M2
    logits2[idx, partner] = 0.0
    logits2 = logits2.masked_fill(eye, -1e9)
    spa_rows = F.cross_entropy(logits2, tt, reduction="none") * valid
    spa = spa_rows.sum() / n
    return ccm + spa, spa.item()


step = 0
acc, acc_spa, cnt = 0.0, 0.0, 0
t_start = time.time()
fixed = None
for epoch in range(a.epochs):
    perm = np.random.permutation(N)
    for b in range(steps_per_epoch):
        t_step = time.time()
        if fixed is None or not a.fixed:
            base = perm[b * (a.batch // R):(b + 1) * (a.batch // R)]
            views, ys, rs = [], [], []
            for i in base:
                for rot in range(R):
                    img = images[i].rotate(90 * rot)  # counter-clockwise
                    for _ in range(2):
                        views.append(aug(img)); ys.append(labels[i]); rs.append(rot)
            fixed = (torch.stack(views), torch.tensor(ys), torch.tensor(rs))
        x, y, r = fixed
        net.train(); opt.zero_grad(set_to_none=True)
        loss, spa = loss_fn(net(x), y, r)
        loss.backward(); opt.step(); sched.step()
        acc += loss.item(); acc_spa += spa; cnt += 1; step += 1
        step_s = time.time() - t_step
        if step % a.every == 0:
            print(json.dumps({"step": step, "loss": round(acc / cnt, 4), "spa": round(acc_spa / cnt, 4),
                              "lr": round(sched.get_last_lr()[0], 5), "seconds": round(time.time() - t_start, 1),
                              "step_s": round(step_s, 4)}), flush=True)
            acc, acc_spa, cnt = 0.0, 0.0, 0
        if a.steps and step >= a.steps:
            raise SystemExit(0)
