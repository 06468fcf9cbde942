"""Ablation of the CPC recipe on Fashion-MNIST's validation split, at a fixed number of steps.

    python benchmarks/ablation.py --steps 600 --variants base normalized_t0.1 wide64
    python benchmarks/ablation.py --steps 0 --variants base wide64      # random init

Each variant changes one thing of the code defaults (``ResNetEncoder()``, ``CPCTask()``; see
``VARIANTS``) and is pretrained without labels for ``--steps`` steps of batch ``--batch-size`` on
the 55k train images (the data module's seeded 5k validation hold-out is left out), with a plain
training loop (AdamW, warmup and cosine, as :class:`cpc.module.CPCModule` configures it). Then
the frozen encoder's latent grid and the first CPC direction's context grid are turned into
features (mean: ``D`` values; 2x2 and 3x3 cells: ``4D``, ``9D``; full grid: ``D*G*G``; full grid
projected on its top 512 principal components; context: last row, mean) and each is scored on
the 5k validation images: kNN (k=20, T=0.07, bank = train, standardised and raw) and a linear
probe (weight decay 1e-4, fit on train). The test split is never loaded. One JSON line per
variant is appended to ``--out``; a markdown table is printed at the end. Run it alone on the
machine, or pin it (``OMP_NUM_THREADS=1 taskset -c 0``): the step times are only comparable
between runs that had the same cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.datasets import FashionMNIST

from cpc.eval.knn import KNN
from cpc.eval.linear_probe import linear_probe
from cpc.eval.protocol import EvalProtocol
from cpc.models.augment import PatchAugment
from cpc.models.context import TransformerContext
from cpc.models.encoder import ResNetEncoder
from cpc.module import CPCModule
from cpc.tasks.cpc import CPCTask
from cpc.tasks.rotation import RotationTask

#: name -> changes from the defaults: encoder kwargs, CPC task kwargs, patch augmentation,
#: optimiser settings, and ``rotation``: RotationTask kwargs to train it alongside CPC
VARIANTS: dict[str, dict] = {
    "base": {},
    "no_skip_constant": {"cpc": {"skip_constant": False}},
    "normalized_t0.1": {"cpc": {"normalize": True, "temperature": 0.1}},
    "normalized_t0.3": {"cpc": {"normalize": True, "temperature": 0.3}},
    "four_directions": {"cpc": {"directions": ["down", "up", "right", "left"]}},
    "steps_234": {"cpc": {"steps": [2, 3, 4]}},
    "no_patch_flip": {"augment": {"hflip": 0.0}},
    "wide64": {"encoder": {"width": 64}},
    "three_stages": {"encoder": {"stages": [1, 1, 1]}},
    "proj128": {"cpc": {"projection_dim": 128}},
    "lr4e-3": {"lr": 4e-3},
    "width24": {"encoder": {"width": 24}},
    "transformer": {"cpc": {"context": "transformer"}},
    "wide64_four_directions": {
        "encoder": {"width": 64},
        "cpc": {"directions": ["down", "up", "right", "left"]},
    },
    # on top of width 24: larger patches (5x5 grid; steps >= 3 keep targets off the context rows)
    "width24_patch12_stride4_steps34": {
        "encoder": {"width": 24, "patch_size": 12, "patch_stride": 4},
        "cpc": {"steps": [3, 4]},
    },
    # 10x10 patches every 6 pixels: a 4x4 grid overlapping by 4 pixels
    "width24_patch10_stride6_steps23": {
        "encoder": {"width": 24, "patch_size": 10, "patch_stride": 6},
        "cpc": {"steps": [2, 3]},
    },
    "width24_steps2345": {"encoder": {"width": 24}, "cpc": {"steps": [2, 3, 4, 5]}},
    # CPC plus rotation prediction (RotationTask's defaults, weight 1) on the same encoder
    "width24_plus_rotation": {"encoder": {"width": 24}, "rotation": {}},
}


def load_split(root: str, val_size: int = 5000, seed: int = 0):
    """Train/val images (uint8, (N, 1, 28, 28)) and labels, split as ImageDataModule does."""
    data = FashionMNIST(root, train=True, download=False)
    images, labels = data.data[:, None], data.targets
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = perm[val_size:].sort().values, perm[:val_size].sort().values
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def build(variant: dict) -> CPCModule:
    cpc_kwargs = dict(variant.get("cpc", {}))
    if cpc_kwargs.get("context") == "transformer":
        cpc_kwargs["context"] = TransformerContext
    if "augment" in variant:
        cpc_kwargs["augment"] = PatchAugment(**variant["augment"])
    tasks = [partial(CPCTask, **cpc_kwargs)]
    if "rotation" in variant:
        tasks.append(partial(RotationTask, **variant["rotation"]))
    return CPCModule(encoder=ResNetEncoder(**variant.get("encoder", {})), tasks=tasks)


def pretrain(module: CPCModule, images: torch.Tensor, steps: int, batch_size: int, lr: float):
    """AdamW, linear warmup over 100 steps, cosine to 0 (as CPCModule.configure_optimizers)."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=1e-4)
    warmup = min(100, steps // 2)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, steps - warmup))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    module.train()
    order = torch.randperm(len(images))
    pos, losses = 0, []
    for _ in range(steps):
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(images)), 0
        batch = images[order[pos : pos + batch_size]].float() / 255  # (B, 1, 28, 28)
        pos += batch_size
        metrics = module.shared_step(batch, "train")
        opt.zero_grad(set_to_none=True)
        metrics["train/loss"].backward()
        opt.step()
        sched.step()
        losses.append(metrics["train/loss"].item())
    return losses


@torch.inference_mode()
def latent_grids(module, images: torch.Tensor, batch_size: int = 1000):
    """Latent grids (N, D, G, G) and the first CPC direction's context grids (N, D, G, G)."""
    module.eval()
    task = module.tasks["cpc"]
    context = task.contexts[task.directions[0]]
    grids, contexts = [], []
    for i in range(0, len(images), batch_size):
        grid = module.encoder.forward_features(images[i : i + batch_size].float() / 255)
        grids.append(grid)
        contexts.append(context(grid))
    return torch.cat(grids), torch.cat(contexts)


def pools(grid: torch.Tensor, context: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "ctx_last": context[:, :, -1].flatten(1),  # last row of the causal context: (N, D*G)
        "ctx_mean": context.mean(dim=(2, 3)),  # (N, D)
        "mean": grid.mean(dim=(2, 3)),  # (N, D)
        "2x2": F.adaptive_avg_pool2d(grid, 2).flatten(1),  # (N, 4D)
        "3x3": F.adaptive_avg_pool2d(grid, 3).flatten(1),  # (N, 9D)
        "full": grid.flatten(1),  # (N, D*G*G)
    }


def score(train_f, train_y, val_f, val_y) -> dict[str, float]:
    knn_std, knn_raw = (
        KNN(EvalProtocol(knn_standardize=standardize))
        .fit(train_f, train_y, 10)
        .accuracy(val_f, val_y)["top1"]
        for standardize in (True, False)
    )
    probe = linear_probe(train_f, train_y, val_f, val_y, val_f, val_y, 10, weight_decays=(1e-4,))
    return {"knn": 100 * knn_std, "knn_raw": 100 * knn_raw, "linear": 100 * probe["val_top1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["base"], choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default="data")
    parser.add_argument("--out", type=Path, default=Path("runs/ablation.jsonl"))
    args = parser.parse_args()
    (train_x, train_y), (val_x, val_y) = load_split(args.root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants:
        variant = VARIANTS[name]
        torch.manual_seed(args.seed)
        module = build(variant)
        start = time.perf_counter()
        losses = pretrain(module, train_x, args.steps, args.batch_size, variant.get("lr", 2e-3))
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        train_pools = pools(*latent_grids(module, train_x))
        val_pools = pools(*latent_grids(module, val_x))
        row = {
            "variant": name,
            "steps": args.steps,
            "seed": args.seed,
            "train_s": round(seconds, 1),
            "s_per_step": round(seconds / max(1, args.steps), 3),
            "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 3)
            if losses
            else None,
        }
        # the full grid on its top 512 principal components (fit on train; randomised PCA here,
        # the report's knn_pca uses the exact eigendecomposition)
        mean = train_pools["full"].mean(0)
        _, _, basis = torch.pca_lowrank(train_pools["full"] - mean, q=512, center=False, niter=3)
        train_pools["pca512"] = (train_pools["full"] - mean) @ basis  # (N, 512)
        val_pools["pca512"] = (val_pools["full"] - mean) @ basis
        for pool, train_f in train_pools.items():
            val_f = val_pools[pool]
            for metric, value in score(train_f, train_y, val_f, val_y).items():
                row[f"{pool}/{metric}"] = round(value, 2)
        row["eval_s"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if "/" in k]
    print("| variant | steps | s/step | " + " | ".join(keys) + " |")
    print("|---" * (3 + len(keys)) + "|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['steps']} | {r['s_per_step']} | "
            + " | ".join(str(r[k]) for k in keys)
            + " |"
        )


if __name__ == "__main__":
    main()
