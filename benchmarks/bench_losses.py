"""Forward+backward time of every loss on a staggered velocity batch, and its ratio to MSE, in one run.

    .venv/bin/python -m benchmarks.bench_losses [--repeats 5]

Speed does not depend on the weights' values, so trunks missing from the weight store are replaced by random
files with torchvision's keys and shapes (noted in the output); LSiM uses ../shared/weights/LSiM.pth or the store.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
import torchvision
from torchvision.models.vgg import cfgs, make_layers

from benchmarks.common import median_seconds, table, write
from fluidperc.losses import ChannelStats, get_loss, parse_loss_spec, weights_needed
from fluidperc.weights import CATALOG, WeightStore, default_dirs

SPECS = ["mse", "mae", "lsim", {"name": "vgg", "layer": "relu3_3"}, {"name": "vgg", "layer": "relu4_3"},
         {"name": "lpips", "net": "alex"}, {"name": "lpips", "net": "vgg"}, {"name": "lpips", "net": "squeeze"}]
SHARED_LSIM = Path(__file__).resolve().parents[2] / "shared" / "weights" / "LSiM.pth"


def random_trunks(store: WeightStore, tmp: Path) -> tuple[WeightStore, list[str]]:
    """A store that falls back to random-valued trunk files for the ones it lacks."""
    makers = {
        "vgg16": lambda: {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()},
        "alexnet": lambda: torchvision.models.alexnet(weights=None).state_dict(),
        "squeezenet1_1": lambda: torchvision.models.squeezenet1_1(weights=None).state_dict(),
    }
    catalog, random_ones = dict(store.catalog), []
    for name, make in makers.items():
        if store.present(name):
            continue
        path = tmp / catalog[name].filename
        torch.save(make(), path)
        catalog[name] = replace(catalog[name], sha256=hashlib.sha256(path.read_bytes()).hexdigest())
        random_ones.append(name)
    dirs = [*store.dirs, tmp] + ([SHARED_LSIM.parent] if SHARED_LSIM.is_file() else [])
    return WeightStore(dirs, catalog), random_ones


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        store, random_ones = random_trunks(WeightStore(default_dirs(), dict(CATALOG)), Path(tmp))
        rows, results = [], []
        for n in args.sizes:
            u = torch.randn(args.batch, 1, n, n + 1)
            v = torch.randn(args.batch, 1, n + 1, n)
            stats = ChannelStats.from_tensor(torch.cat([u[..., :n], v[..., :n, :]], dim=1))
            base = None
            for spec in SPECS:
                label = parse_loss_spec(spec).label
                if any(w == "lsim" and not store.present("lsim") for w in weights_needed(spec)):
                    print(f"skipping {label}: LSiM.pth not found")
                    continue
                loss = get_loss(spec, stats, store)
                pu, pv = (x.clone().requires_grad_(True) for x in (0.9 * u, 0.9 * v))

                def step():
                    pu.grad = pv.grad = None
                    loss.staggered([pu, pv], [u, v]).backward()

                med, times = median_seconds(step, args.repeats)
                base = med if label == "mse" else base
                rows.append([f"{n}x{n}", label, f"{med * 1e3:.1f}", f"{med / base:.0f}x"])
                results.append({"size": n, "loss": label, "median_ms": med * 1e3, "times_ms": [t * 1e3 for t in times],
                                "ratio_to_mse": med / base})
    print(table(["field", "loss", "fwd+bwd ms (median)", "vs mse"], rows))
    if random_ones:
        print(f"random-valued trunks (same architecture and cost) for: {', '.join(random_ones)}")
    path = write("bench_losses", {"batch": args.batch, "components": 2, "repeats": args.repeats,
                                  "random_trunks": random_ones, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
