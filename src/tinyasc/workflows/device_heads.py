"""Device-specific heads (DCASE 2025, where the recording device is known at test time).

From a trained run, ``device_heads`` fine-tunes the model's head (its last convolution or linear layer
and the layers after it, found by one forward pass) once per training device, on that device's training
clips only, with the rest of the network frozen and in evaluation mode (batch-norm statistics kept). The
new run ships the shared model plus the heads in one model file; prediction picks the head of a clip's
device (from the TAU file name, or the index's device column), and a device without a head, or a file
whose device is unknown, uses the shared model. The heads' parameters are counted with the shared
model's against the edition's limits (``tinyasc size --rules dcase2025 RUN``). The held-out evaluate
split is never used for fine-tuning.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc import artifact
from tinyasc.compress.size import example_input, traced_pass
from tinyasc.data.dataset import batches, prepare_splits
from tinyasc.evaluate.run import evaluate_run
from tinyasc.rundir import RunDir


class DeviceHeadsError(ValueError):
    pass


def head_parameter_names(model: nn.Module, head: str = "last") -> list[str]:
    """``last``: the parameters of the last conv/linear layer in execution order and of every layer run
    after it; ``after``: those of the layers after it only (for a classifier ending in a batch norm, a
    per-device affine correction of the logits at a few parameters per class)."""
    order: list[str] = []
    hooks = []
    for name, m in model.named_modules():
        if next(m.children(), None) is None and any(True for _ in m.parameters(recurse=False)):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: order.append(name)))
    traced_pass(model, example_input(model), hooks)
    modules = dict(model.named_modules())
    last = max(
        (i for i, n in enumerate(order) if isinstance(modules[n], nn.Conv1d | nn.Conv2d | nn.Linear)),
        default=None,
    )
    if last is None:
        raise DeviceHeadsError("the model has no convolution or linear layer to serve as its head")
    names = []
    for layer in dict.fromkeys(order[last if head == "last" else last + 1 :]):
        names += [f"{layer}.{k}" for k, _ in modules[layer].named_parameters(recurse=False)]
    if not names:
        raise DeviceHeadsError(
            f"--head {head}: no layer with parameters runs after {order[last]}; use --head last"
        )
    return names


def fine_tune_head(
    model: nn.Module,
    norm: nn.Module,
    names: list[str],
    features: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    """The head ``names`` of a copy of ``model`` trained on ``rows``; returns its tensors."""
    model = copy.deepcopy(model).eval()  # frozen body: dropout off, batch-norm statistics kept
    params = dict(model.named_parameters())
    for k, p in params.items():
        p.requires_grad_(k in names)
    opt = torch.optim.Adam([params[k] for k in names], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for x, y, _pos in batches(features, rows, labels, batch_size, shuffle=True, generator=gen):
            loss = nn.functional.cross_entropy(model(norm(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: params[k].detach().clone() for k in names}


def device_heads(
    source: str | Path,
    out: str | Path,
    devices: list[str] | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    evaluate: bool = True,
    progress: bool = True,
    head: str = "last",
    rules: str | None = None,
) -> dict:
    """Write the run ``out``: the source run's model plus one fine-tuned head per device."""
    src, out = RunDir(source), Path(out)
    if not src.is_run:
        raise DeviceHeadsError(f"{source}: not a finished tinyasc run")
    if out.exists():
        raise DeviceHeadsError(
            f"{out}: exists already; choose a new folder (the source run is never changed)"
        )
    cfg = src.config()
    if rules is not None:  # the edition the new run is checked against (default: the source's)
        cfg = dataclasses.replace(cfg, rules=rules)
    if cfg.quantize not in ("float32", "float16", "float16-all"):
        raise DeviceHeadsError(
            f"{source}: ships {cfg.quantize}; device heads ship at float32 or float16 (compress after is not supported)"
        )
    art = artifact.load_float(src.float_model_path, "device heads")
    model = artifact.load_stored(art)
    norm = artifact.normalizer_of(art).eval()
    names = head_parameter_names(model, head)
    splits = prepare_splits(cfg.data, cfg.frontend, progress=progress)
    train = splits.train + splits.val  # the validation part is training data too: no selection here
    present = sorted({c.device for c in train if c.device})
    devices = list(devices) if devices else present
    missing = [d for d in devices if d not in present]
    if missing:
        raise DeviceHeadsError(
            f"--devices {' '.join(missing)}: no training clips; the training devices are {present}"
        )
    heads, counts = {}, {}
    for i, d in enumerate(devices):
        clips = [c for c in train if c.device == d]
        counts[d] = len(clips)
        if progress:
            print(f"head for device {d}: {len(clips)} training clips, {epochs} epochs", flush=True)
        heads[d] = fine_tune_head(
            model, norm, names, splits.features, splits.rows(clips), splits.labels(clips),
            epochs, lr, cfg.train.batch_size, cfg.train.seed + i,
        )  # fmt: skip
    layers = sorted({n.rsplit(".", 1)[0] for n in names})
    new = dict(
        art, device_heads={"layers": layers, "heads": heads, "clips": counts, "epochs": epochs, "lr": lr}
    )
    staged = RunDir(out).staging()
    if staged.path.exists():
        shutil.rmtree(staged.path)  # nothing of an interrupted attempt is reused: it is minutes of work
    staged.path.mkdir(parents=True)
    staged.save_config(cfg)
    staged.save_float_model(new)
    shipped = staged.ship(new, model, cfg.quantize, rules=cfg.rules)
    record = {
        "source": str(Path(source).resolve()),
        "devices": devices,
        "clips": counts,
        "layers": layers,
        "head": head,
        "head_params": sum(t.numel() for t in heads[devices[0]].values()),
        "shipped": shipped,
        "epochs": epochs,
        "lr": lr,
    }
    if evaluate:
        m = evaluate_run(staged.path, progress=progress)
        record["evaluation"] = {"accuracy": m["overall"]["accuracy"], "logloss": m["overall"]["logloss"]}
        base = src.evaluation()
        if base:  # the shared model alone, as `tinyasc evaluate SOURCE` measured it
            o = base["overall"]
            record["source_evaluation"] = {"accuracy": o["accuracy"], "logloss": o["logloss"]}
    staged.save_device_heads_record(record)
    staged.path.rename(out)
    return record
