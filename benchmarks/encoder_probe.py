"""Would a larger or finer image encoder read the checker's close calls? A probe, not a judge.

The reader's text-to-image misses are shape words on objects the checker itself calls by a hair
(its best template IoU leads the runner-up by under 0.05; docs/rewards.md). Training a whole judge
to find out whether its image encoder is what limits that costs an hour, so this probe asks the
encoder alone. Each candidate encoder sees the image; the features of the cells an object covers
are pooled by its mask (the parser's: the probe is told *where* the object is, as the Seen line's
position tells the reader) and a linear head names its shape the checker's way: circle, square,
triangle, or blob below the checker's template IoU. Trained on the images of a judge data folder
(the bundled models' samples and grammar renders of train-split prompts), measured on the four
bundled models' test samples (one per prompt, the seeds ``benchmarks/judge.py`` uses), object by
object, by the checker's margin.

Candidates (``--probes``; all train the same steps on the same batches):

* ``vit4``: the reader's vision tower from scratch (Qwen2-VL, width 128, 5 blocks, 4-pixel patches);
* ``vit2``: the same over 2-pixel patches (four times the tokens);
* ``vit4-wide``: width 256 and 8 blocks over 4-pixel patches;
* ``shipped-frozen`` / ``shipped``: the shipped reader's own tower (``--judge``), frozen under a
  linear head, or fine-tuned;
* ``cnn``: a plain convolutional net at full resolution (no patches), a different design;
* ``mask-cnn``: the same net shown only the object's own mask (the parser's segmentation, no
  image): how well the shape call can be learned once perception is perfect, an upper bound;
* ``crop-mlp`` / ``mask-crop-mlp``: a perceptron (two hidden layers) on a window centred on the object's
  centroid, cut from the image or from its mask: a second look at one object, aligned the way the
  checker aligns its templates (on the centroid) instead of pooled.

Two objectives (``--objective``): ``class`` names the shape with a cross-entropy on the checker's
class; ``iou`` regresses the checker's three template IoUs (its ``shape_scores``) and names the
shape the checker's way from the predicted ones (the best, or a blob below the IoU threshold), a
continuous target where the class flips on a hair.

``--boundary N`` adds N renders of shapes between shapes (``qwenrl.world.boundary``: two
templates blended, labelled by the checker) to the training images, data aimed at the close calls.

    python benchmarks/encoder_probe.py --data runs/judge-reader-new-base/data [--steps 1500] [--objective iou] [--boundary 12288]

Prints a markdown table and writes benchmarks/results/encoder_probe.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results" / "encoder_probe.json"
CLASSES = ("circle", "square", "triangle", "blob")
PROBES = ("vit4", "vit2", "vit4-wide", "shipped-frozen", "shipped", "cnn", "mask-cnn", "crop-mlp", "mask-crop-mlp")
OBJECTIVES = ("class", "iou")


def objects_of(images: np.ndarray) -> list[tuple[int, np.ndarray, int, float, np.ndarray]]:
    """(image index, mask, class index, the checker's margin, its IoU per template shape) of every
    object the parser finds."""
    from qwenrl.world.check import recognisable
    from qwenrl.world.parse import parse

    out = []
    for i, image in enumerate(images):
        for o in parse(image).objects:
            label = CLASSES.index(o.shape) if recognisable(o) else CLASSES.index("blob")
            scores = np.array([o.shape_scores[c] for c in CLASSES[:3]], np.float32)
            out.append((i, o.mask, label, float(o.shape_margin), scores))
    return out


def class_of_scores(scores: torch.Tensor) -> torch.Tensor:
    """The checker's decision from template IoUs: the best shape, a blob below the threshold."""
    from qwenrl.world.check import MIN_SHAPE_CONFIDENCE

    best, index = scores.max(-1)
    return torch.where(best >= MIN_SHAPE_CONFIDENCE, index, CLASSES.index("blob"))


def folder_images(data: Path, limit: int | None) -> np.ndarray:
    """Every image of the data folder's model and render chunks (edits: their results)."""
    from safetensors.numpy import load_file

    chunks = sorted(p for p in data.iterdir() if p.is_dir() and ("-model-" in p.name or "-render-" in p.name))
    if not chunks:
        raise SystemExit(f"{data}: no *-model-* or *-render-* chunks (a judge data folder: python -m training.judge --data-only)")
    images = np.concatenate([load_file(str(c / "images.safetensors"))["image"] for c in chunks])
    if limit is not None:
        images = images[np.random.default_rng(0).permutation(len(images))[:limit]]
    return images


def new_tower(patch: int, width: int, depth: int, heads: int = 4) -> Any:
    """A randomly initialised Qwen2-VL vision tower (2×2 patches merge into one 192-wide token)."""
    from transformers.models.qwen2_vl.configuration_qwen2_vl import Qwen2VLVisionConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VisionTransformerPretrainedModel

    torch.manual_seed(0)
    return Qwen2VisionTransformerPretrainedModel(Qwen2VLVisionConfig(
        depth=depth, embed_dim=width, hidden_size=192, mlp_ratio=2, num_heads=heads, patch_size=patch,
        spatial_merge_size=2, temporal_patch_size=1))


class ViTProbe(torch.nn.Module):
    """A Qwen2-VL vision tower whose merged tokens are pooled by each object's mask."""

    def __init__(self, tower: Any) -> None:
        super().__init__()
        from training.judge import build_image_processor

        self.patch = tower.config.patch_size
        self.processor = build_image_processor(SimpleNamespace(patch_size=self.patch))
        self.tower = tower
        self.head = torch.nn.Linear(tower.config.hidden_size, len(CLASSES))

    @property
    def cell(self) -> int:
        return 2 * self.patch

    def features(self, images: np.ndarray) -> torch.Tensor:
        """(n, cells, hidden): the merged tokens of each image, raster order of cells."""
        batch = self.processor(images=list(images), return_tensors="pt")
        tokens = self.tower(batch["pixel_values"], grid_thw=batch["image_grid_thw"]).pooler_output
        return tokens.reshape(len(images), -1, tokens.shape[-1])

    def forward(self, images: np.ndarray, owners: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        feats = self.features(images)
        side = images.shape[1] // self.cell
        cover = masks.reshape(len(masks), side, self.cell, side, self.cell).sum(axis=(2, 4)).reshape(len(masks), -1)
        weights = torch.from_numpy(cover / cover.sum(1, keepdims=True)).float()
        pooled = torch.einsum("oc,och->oh", weights, feats[torch.from_numpy(owners)])
        return self.head(pooled)


class CNNProbe(torch.nn.Module):
    """Four 3×3 convolutions at full resolution; each object's pixels are pooled by its mask.
    With ``from_mask`` the net sees the object's mask alone instead of the image."""

    def __init__(self, width: int = 64, from_mask: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.from_mask = from_mask
        layers, c = [], 1 if from_mask else 3
        for dilation in (1, 1, 2, 4):
            layers += [torch.nn.Conv2d(c, width, 3, padding=dilation, dilation=dilation), torch.nn.GELU()]
            c = width
        self.net = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(width, len(CLASSES))

    def forward(self, images: np.ndarray, owners: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        m = torch.from_numpy(masks).float()
        if self.from_mask:
            feats = self.net(m[:, None] * 2.0 - 1.0).flatten(2)  # (objects, width, pixels)
        else:
            x = torch.from_numpy(images).float().permute(0, 3, 1, 2) / 127.5 - 1.0
            feats = self.net(x).flatten(2)[torch.from_numpy(owners)]  # (objects, width, pixels)
        m = m.reshape(len(masks), -1)
        pooled = torch.einsum("op,owp->ow", m / m.sum(1, keepdim=True), feats)
        return self.head(pooled)


class CropProbe(torch.nn.Module):
    """A perceptron with two hidden layers on a ``window``-pixel square centred on each object's centroid (rounded
    to the pixel), cut from the image (edges repeated past the border) or from the object's mask."""

    def __init__(self, window: int = 20, hidden: int = 256, from_mask: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.window, self.from_mask = window, from_mask
        inputs = window * window * (1 if from_mask else 3)
        self.net = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
                                       torch.nn.GELU(), torch.nn.Linear(hidden, len(CLASSES)))

    def crops(self, images: np.ndarray, owners: np.ndarray, masks: np.ndarray) -> np.ndarray:
        w, half = self.window, self.window // 2
        out = []
        for owner, mask in zip(owners, masks):
            ys, xs = np.nonzero(mask)
            cy, cx = int(round(ys.mean())) + half, int(round(xs.mean())) + half
            if self.from_mask:
                src = np.pad(mask.astype(np.float32)[..., None], ((half, half), (half, half), (0, 0)))
            else:
                src = np.pad(images[owner].astype(np.float32) / 127.5 - 1.0, ((half, half), (half, half), (0, 0)), mode="edge")
            out.append(src[cy - half:cy - half + w, cx - half:cx - half + w])
        return np.stack(out)

    def forward(self, images: np.ndarray, owners: np.ndarray, masks: np.ndarray) -> torch.Tensor:
        return self.net(torch.from_numpy(self.crops(images, owners, masks)).flatten(1))


def build_probe(name: str, judge: Path) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """The probe and the parameters it trains."""
    if name in ("crop-mlp", "mask-crop-mlp"):
        probe = CropProbe(from_mask=name == "mask-crop-mlp")
        return probe, list(probe.parameters())
    if name in ("cnn", "mask-cnn"):
        probe = CNNProbe(from_mask=name == "mask-cnn")
        return probe, list(probe.parameters())
    if name in ("vit4", "vit2", "vit4-wide"):
        patch = 2 if name == "vit2" else 4
        width, depth = (256, 8) if name == "vit4-wide" else (128, 5)
        probe = ViTProbe(new_tower(patch, width, depth))
        return probe, list(probe.parameters())
    if name in ("shipped", "shipped-frozen"):
        from transformers import Qwen2VLForConditionalGeneration

        tower = Qwen2VLForConditionalGeneration.from_pretrained(judge, use_safetensors=True).model.visual
        probe = ViTProbe(tower)
        if name == "shipped-frozen":
            for p in probe.tower.parameters():
                p.requires_grad_(False)
            return probe, list(probe.head.parameters())
        return probe, list(probe.parameters())
    raise SystemExit(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")


def batches(objects: list, images: np.ndarray, batch_images: int, steps: int, seed: int):
    """``steps`` batches of ``batch_images`` images with all their objects, a function of the seed."""
    by_image: dict[int, list[int]] = {}
    for k, (i, *_rest) in enumerate(objects):
        by_image.setdefault(i, []).append(k)
    keys = np.array(sorted(by_image))
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        chosen = rng.choice(keys, size=min(batch_images, len(keys)), replace=False)
        yield pack(objects, images, [k for i in chosen for k in by_image[i]])


def pack(objects: list, images: np.ndarray, rows: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images, owner index per object into them, masks, labels, template IoUs) of the objects ``rows``."""
    owners_global = [objects[k][0] for k in rows]
    uniq = sorted(set(owners_global))
    where = {g: j for j, g in enumerate(uniq)}
    return (images[uniq], np.array([where[g] for g in owners_global]), np.stack([objects[k][1] for k in rows]),
            np.array([objects[k][2] for k in rows]), np.stack([objects[k][4] for k in rows]))


def probe_loss(out: torch.Tensor, labels: np.ndarray, scores: np.ndarray, objective: str) -> torch.Tensor:
    """``class``: cross-entropy on the checker's class; ``iou``: squared error of the predicted
    template IoUs (a sigmoid of the first three outputs), in units of 0.1 IoU."""
    if objective == "class":
        return torch.nn.functional.cross_entropy(out, torch.from_numpy(labels))
    return torch.nn.functional.mse_loss(10 * torch.sigmoid(out[:, :3]), 10 * torch.from_numpy(scores))


def decide(out: torch.Tensor, objective: str) -> torch.Tensor:
    """The class each object is named: the likeliest, or the checker's rule on predicted IoUs."""
    return out.argmax(-1) if objective == "class" else class_of_scores(torch.sigmoid(out[:, :3]))


def train_probe(probe: torch.nn.Module, params: list, objects: list, images: np.ndarray, steps: int, lr: float,
                seed: int, objective: str = "class") -> dict[str, float]:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    probe.train()
    t0, losses = time.perf_counter(), []
    for step, (ims, owners, masks, labels, scores) in enumerate(batches(objects, images, 32, steps, seed), 1):
        loss = probe_loss(probe(ims, owners, masks), labels, scores, objective)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 250 == 0 or step == steps:
            print(f"  step {step}/{steps} loss {np.mean(losses[-250:]):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return {"train_seconds": time.perf_counter() - t0, "final_loss": float(np.mean(losses[-100:]))}


@torch.no_grad()
def predict(probe: torch.nn.Module, objects: list, images: np.ndarray, objective: str = "class") -> np.ndarray:
    probe.eval()
    out = []
    for start in range(0, len(objects), 256):
        ims, owners, masks, *_ = pack(objects, images, list(range(start, min(start + 256, len(objects)))))
        out.append(decide(probe(ims, owners, masks), objective).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def summary(objects: list, predicted: np.ndarray) -> dict[str, Any]:
    """Shapes named right, overall, by true shape and, for recognisable shapes, by the checker's
    margin: ``benchmarks/judge.py``'s summary of a judge's Seen lines, on the probe's names."""
    from judge import shapes_read_summary

    out = shapes_read_summary([("", CLASSES[o[2]], CLASSES[int(p)], o[3]) for o, p in zip(objects, predicted)])
    out.pop("by_size")  # the probe does not size objects
    by_image: dict[int, list[bool]] = {}
    for o, p in zip(objects, predicted):
        by_image.setdefault(o[0], []).append(o[2] == int(p))
    # the shape part of a Seen line: images (with objects) whose every object is named right
    out["images_all_right"] = float(np.mean([all(v) for v in by_image.values()])) if by_image else None
    return out


def close_call_share(objects: list, edge: float) -> dict[str, Any]:
    """How many images (with objects) hold a recognisable object the checker calls by under ``edge``."""
    images = {o[0] for o in objects}
    close = {o[0] for o in objects if CLASSES[o[2]] != "blob" and o[3] < edge}
    return {"images": len(images), "with_close_call": len(close), "share": len(close) / len(images) if images else None}


def main(argv: list[str] | None = None) -> None:
    from judge import MARGIN_EDGES, MODELS, sample_models

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a judge data folder (its model and render chunks)")
    ap.add_argument("--judge", type=Path, default=ROOT / "data" / "models" / "shapes-judge-reader")
    ap.add_argument("--probes", nargs="+", default=list(PROBES), choices=PROBES)
    ap.add_argument("--tasks", nargs="+", default=["t2i"], choices=["t2i", "edit"])
    ap.add_argument("--objective", default="class", choices=OBJECTIVES)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--train-images", type=int, default=None, help="at most this many training images")
    ap.add_argument("--boundary", type=int, default=0,
                    help="add this many renders of shapes between shapes (qwenrl.world.boundary) to the training images")
    ap.add_argument("--limit", type=int, default=None, help="test prompts per task (default all)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.steps < 1:
        raise SystemExit("--steps must be at least 1")
    if args.boundary < 0:
        raise SystemExit("--boundary must be 0 or more")
    torch.set_num_threads(2)
    train_images = folder_images(args.data, args.train_images)
    if args.boundary:
        from qwenrl.world.boundary import boundary_images

        train_images = np.concatenate([train_images, boundary_images(args.boundary, seed=0)])
    train_objects = objects_of(train_images)
    tests = {}
    for task in args.tasks:
        _, _, images = sample_models(task, MODELS, args.limit, seed=0)
        tests[task] = (images, objects_of(images))
    close = {t: close_call_share(o, MARGIN_EDGES[1]) for t, (_, o) in tests.items()}
    print(f"{len(train_images)} training images, {len(train_objects)} objects; "
          + ", ".join(f"{t}: {len(o)} test objects, {close[t]['with_close_call']} of {close[t]['images']} images "
                      f"with a close call (margin < {MARGIN_EDGES[1]:g})" for t, (_, o) in tests.items()), flush=True)
    results: dict[str, Any] = {}
    for name in args.probes:
        print(f"{name}:", flush=True)
        probe, params = build_probe(name, args.judge)
        row = {"parameters": sum(p.numel() for p in params),
               **train_probe(probe, params, train_objects, train_images, args.steps, args.lr, seed=0,
                                  objective=args.objective)}
        for task, (images, objects) in tests.items():
            row[task] = summary(objects, predict(probe, objects, images, args.objective))
        results[name] = row
    bins = [f"{lo:g}-{hi:g}" for lo, hi in zip(MARGIN_EDGES, MARGIN_EDGES[1:])] + [f"{MARGIN_EDGES[-1]:g}+"]
    for task in args.tasks:
        print(f"\n{task}: shapes named right on the bundled models' test samples\n")
        print("| probe | trained parameters | train s | all objects | images all right | " + " | ".join(f"margin {b}" for b in bins) + " |")
        print("|---|---|---|---|---|" + "---|" * len(bins))
        for name, row in results.items():
            s = row[task]
            cells = " | ".join("—" if s["by_margin"][b]["right"] is None else f"{100 * s['by_margin'][b]['right']:.1f}% of {s['by_margin'][b]['n']}"
                               for b in bins)
            print(f"| {name} | {row['parameters']:,} | {row['train_seconds']:.0f} | {100 * s['right']:.1f}% | "
                  f"{100 * s['images_all_right']:.1f}% | {cells} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "steps": args.steps, "lr": args.lr, "objective": args.objective,
                                    "boundary_renders": args.boundary, "train_images": int(len(train_images)),
                                    "train_objects": len(train_objects), "close_calls": close, "probes": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
