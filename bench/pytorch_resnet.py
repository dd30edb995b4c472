"""PyTorch reference for `mcl-dist bench`: the same CIFAR ResNet + projector, the same step
(forward, backward of sum(z * dz), SGD Nesterov), random 32x32 inputs. Prints one JSON line."""
import argparse, json, time
import torch, torch.nn as nn, torchvision

p = argparse.ArgumentParser()
p.add_argument("--model", default="resnet18"); p.add_argument("--batch", type=int, default=64)
p.add_argument("--threads", type=int, default=2); p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=2); p.add_argument("--inference", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
enc = getattr(torchvision.models, a.model)(num_classes=10)
enc.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False); enc.maxpool = nn.Identity(); enc.fc = nn.Identity()
net = nn.Sequential(enc, nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 128))
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-6)
x = torch.rand(a.batch, 3, 32, 32)
times = []
for i in range(a.warmup + a.steps):
    t0 = time.perf_counter()
    if a.inference:
        net.eval()
        with torch.no_grad(): net(x)
    else:
        net.train(); opt.zero_grad(set_to_none=True)
        z = net(x); (z.detach() / a.batch * z).sum().backward(); opt.step()
    if i >= a.warmup: times.append(time.perf_counter() - t0)
times.sort(); step = times[len(times) // 2]
print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "model": a.model, "batch": a.batch,
                  "threads": a.threads, "images_per_s": a.batch / step, "seconds_per_step": step}))
