"""PyTorch reference for `mcl-dist bench`: the same CIFAR ResNet + projector, the same step
(forward, backward of sum(z * dz), SGD Nesterov), random 32x32 inputs. Prints one JSON line."""
import argparse, json, time
import torch, torch.nn as nn


class BasicBlock(nn.Module):
    """torchvision's BasicBlock (written out so the benchmark needs only torch)."""
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def cifar_resnet(blocks, w=64):
    layers = [nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
    cin = w
    for stage, n in enumerate(blocks):
        cout = w << stage
        for b in range(n):
            layers.append(BasicBlock(cin, cout, 2 if stage > 0 and b == 0 else 1)); cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="resnet18"); p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2); p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2); p.add_argument("--inference", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    enc = cifar_resnet({"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}[a.model])
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


if __name__ == "__main__":
    main()
