"""A one-minute tour of spadenorm on the CPU: a SPADE layer next to the original formulation.

Run: ``python examples/demo.py``. It loads the same weights into spadenorm's ``SPADE`` and into the original
formulation (``spadenorm.reference.OriginalSPADE``), checks that both give the same output and gradients, and
prints what each saves for backward and how long one forward+backward takes.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import spadenorm
from spadenorm.reference import OriginalSPADE
from spadenorm.testing import saved_tensor_bytes


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--size", type=int, default=64, help="height and width of the activations")
    parser.add_argument("--label-nc", type=int, default=35)
    parser.add_argument("--norm", choices=["instance", "batch"], default="instance")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(0)
    original = OriginalSPADE(args.norm, 3, args.channels, args.label_nc)
    layer = spadenorm.SPADE(args.channels, args.label_nc, norm=args.norm)
    layer.load_state_dict(original.state_dict(), strict=True)

    x = torch.randn(2, args.channels, args.size, args.size, requires_grad=True)
    labels = torch.randint(0, args.label_nc, (2, args.size * 4, args.size * 4))
    one_hot = F.one_hot(labels, args.label_nc).permute(0, 3, 1, 2).float()

    y = layer(x, labels)  # integer label maps are one-hot encoded inside
    (dx,) = torch.autograd.grad(y.square().sum(), x)
    y_ref = original(x, one_hot)
    (dx_ref,) = torch.autograd.grad(y_ref.square().sum(), x)
    print(f"spadenorm {spadenorm.__version__}, torch {torch.__version__}, backend {spadenorm.get_backend()!r}")
    print(f"SPADE({args.channels}, label_nc={args.label_nc}, norm={args.norm!r}) on x {tuple(x.shape)}")
    print(f"  max |y - y_original|   = {(y - y_ref).abs().max().item():.2e}")
    print(f"  max |dx - dx_original| = {(dx - dx_ref).abs().max().item():.2e}")

    gamma = torch.randn_like(x, requires_grad=True)
    beta = torch.randn_like(x, requires_grad=True)
    dy = torch.randn_like(x)
    norm_fn = F.instance_norm if args.norm == "instance" else (lambda t: F.batch_norm(t, None, None, training=True))
    ops = {
        "original  norm(x) * (1 + gamma) + beta": lambda: norm_fn(x) * (1 + gamma) + beta,
        "spadenorm modulated_norm(x, gamma, beta)": lambda: spadenorm.functional.modulated_norm(
            x, gamma, beta, norm=args.norm
        ),
    }
    activation = x.numel() * x.element_size()
    print("normalize-and-modulate, forward + backward:")
    for name, fn in ops.items():
        saved = saved_tensor_bytes(fn) / activation
        ms = median_ms(lambda fn=fn: fn().backward(dy), args.repeats)
        print(f"  {name:42s} saves {saved:.2f} x activation size, {ms:7.2f} ms")


if __name__ == "__main__":
    main()
