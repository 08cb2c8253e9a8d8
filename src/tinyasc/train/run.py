"""fit(config): data, frontend statistics, model, Adam, epochs, model selection, checkpoints, float16.

A run directory describes itself:
  config.yaml       resolved config
  metrics.jsonl     one JSON line per epoch (train and validation loss / accuracy)
  last.pt           full training state for --resume (model, optimizer, epoch, RNG, best so far)
  best.pt           weights of the best validation accuracy after ``train.select_after`` epochs
  model.pt          the selected float32 model with its frontend, normalisation and classes
  model_float16.pt  the same stored in float16 (batch norm float32), when ``quantize: float16``
  size.json/.txt    DCASE 2021 size report of what ships
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tinyasc.augment.device import DeviceTranslation, learn_device_transfer
from tinyasc.compress import int8
from tinyasc.compress.prune import Pruner, target_sparsity
from tinyasc.compress.quantize import load_as_stored
from tinyasc.compress.ship import (
    FILE_NAMES,
    ShipError,
    check_precision,
    load_float_artifact,
    size_report,
    storage_of,
    stored_state,
)
from tinyasc.compress.size import example_input
from tinyasc.config import Config, ConfigError, config_from_dict, plain, save_config
from tinyasc.data.cache import cached_waveforms
from tinyasc.data.dataset import batches, prepare_splits
from tinyasc.distill.logits import join_logits
from tinyasc.frontend import Normalizer, band_statistics
from tinyasc.io import atomic_write_json, atomic_write_text
from tinyasc.models import create_model, get_model_info
from tinyasc.train.checkpoint import load_checkpoint, save_checkpoint
from tinyasc.train.distributed import Dist, epoch_order, init_distributed, shutdown
from tinyasc.train.loop import loss_and_accuracy, predict_logits, train_one_epoch
from tinyasc.train.recipe import BatchRecipe, check_augment

log = logging.getLogger(__name__)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_frontend(cfg: Config) -> None:
    info = get_model_info(cfg.model.name)
    if (cfg.frontend.n_mels, cfg.frontend.frames) != (info.n_mels, info.frames) and not cfg.model.params:
        raise ConfigError(
            f"model {cfg.model.name!r} expects {info.n_mels} mel bands x {info.frames} frames; the frontend "
            f"gives {cfg.frontend.n_mels} x {cfg.frontend.frames}"
        )


def _check_train(t) -> None:
    if t.optimizer not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"train.optimizer: {t.optimizer!r}; expected 'adam', 'adamw' or 'sgd'")
    if t.schedule not in ("constant", "cosine", "linear"):
        raise ConfigError(f"train.schedule: {t.schedule!r}; expected 'constant', 'cosine' or 'linear'")
    if t.lr <= 0 or t.lr_min < 0 or t.lr_min > t.lr:
        raise ConfigError(f"train.lr={t.lr}, train.lr_min={t.lr_min}: need 0 <= lr_min <= lr and lr > 0")
    if t.warmup_epochs < 0 or t.decay_start < 0 or t.epochs < 1:
        raise ConfigError("train.epochs must be >= 1; train.warmup_epochs and train.decay_start >= 0")


def _check_prune(cfg: Config) -> None:
    p = cfg.prune
    if not 0 <= p.target < 1:
        raise ConfigError(f"prune.target={p.target}: expected a sparsity in [0, 1)")
    if p.target == 0:
        return
    if p.scope not in ("global", "layer"):
        raise ConfigError(f"prune.scope: {p.scope!r}; expected 'global' or 'layer'")
    if p.schedule not in ("linear", "exponential"):
        raise ConfigError(f"prune.schedule: {p.schedule!r}; expected 'linear' or 'exponential'")
    reached = p.start_epoch + max(p.ramp_epochs, 1) - 1
    if p.start_epoch < 1 or reached > cfg.train.epochs:
        raise ConfigError(
            f"prune: the ramp from epoch {p.start_epoch} over {p.ramp_epochs} epochs reaches the target at "
            f"epoch {reached}, after the last epoch {cfg.train.epochs}; shorten prune.ramp_epochs or train longer"
        )


def make_optimizer(params, t) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay
        )
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, eps=1e-7, weight_decay=t.weight_decay)


def learning_rate(t, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``: linear warm-up, then constant, cosine or linear decay.

    The decay runs from the end of epoch ``max(warmup_epochs, decay_start)`` to ``lr_min`` at the last
    epoch; a pure function of the epoch, so a resumed run continues the same schedule.
    """
    if epoch <= t.warmup_epochs:
        return t.lr * epoch / t.warmup_epochs
    if t.schedule == "constant":
        return t.lr
    start = max(t.warmup_epochs, t.decay_start)
    span = t.epochs - start
    p = min(max((epoch - start) / span, 0.0), 1.0) if span > 0 else 1.0
    if t.schedule == "cosine":
        return t.lr_min + (t.lr - t.lr_min) * 0.5 * (1 + math.cos(math.pi * p))
    return t.lr - (t.lr - t.lr_min) * p


def _resume_state(run_dir: Path, cfg: Config) -> dict | None:
    last = run_dir / "last.pt"
    if not last.exists():
        return None
    state = load_checkpoint(last)
    old = dict(state["config"])
    new = cfg.to_dict()
    old_train, new_train = dict(old.pop("train")), dict(new.pop("train"))
    old_train.pop("epochs"), new_train.pop("epochs")
    if (
        json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str)
        or old_train != new_train
    ):
        raise ConfigError(
            f"{run_dir}: --resume with a different config than the interrupted run (only train.epochs may change)"
        )
    return state


def fit(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train per ``cfg`` into ``run_dir``; returns a summary dict. Under torchrun, trains with DDP."""
    d = init_distributed()
    try:
        return _fit(cfg, Path(run_dir), resume, progress and d.is_main, d)
    finally:
        shutdown(d)


def _fit(cfg: Config, run_dir: Path, resume: bool, progress: bool, d: Dist) -> dict:
    from tqdm import tqdm

    _check_frontend(cfg)
    _check_train(cfg.train)
    _check_prune(cfg)
    check_augment(cfg.augment, cfg.train)
    try:
        check_precision(cfg.quantize, dict(cfg.model.params))
    except ShipError as e:
        raise ConfigError(str(e)) from None
    if cfg.calibration_clips < 1:
        raise ConfigError(f"calibration_clips={cfg.calibration_clips}: need at least one clip")
    if cfg.train.batch_size % d.world:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} (global) must divide by the {d.world} ranks"
        )
    if run_dir.exists() and (run_dir / "last.pt").exists() and not resume:
        raise ConfigError(
            f"{run_dir}: holds a run already; pass --resume to continue it or choose a new folder"
        )
    state = _resume_state(run_dir, cfg) if resume else None
    d.barrier()  # every rank has read the old state before rank 0 writes anything
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = select_device(cfg.train.device)
    if device.type == "cuda" and d.active:
        device = torch.device("cuda", d.local_rank)

    if not d.is_main:
        d.barrier()  # rank 0 fills the feature cache first; the others then read it
    splits = prepare_splits(cfg.data, cfg.frontend, progress=progress)
    if d.is_main:
        d.barrier()
    n_classes = len(splits.index.classes)
    train_rows, val_rows = splits.rows(splits.train), splits.rows(splits.val)
    train_y, val_y = splits.labels(splits.train), splits.labels(splits.val)
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ConfigError(
            f"{cfg.data.root}: {len(train_rows)} training and {len(val_rows)} validation clips; need both"
        )

    # Normalisation over all frames of all training-fold files (validation part included), as dcase_util.
    all_train = np.sort(np.concatenate([train_rows, val_rows]))
    mean, std = band_statistics(_gather(splits.features, all_train))
    norm = Normalizer(cfg.frontend.n_mels)
    norm.mean.copy_(torch.from_numpy(mean))
    norm.std.copy_(torch.from_numpy(std))
    norm = norm.to(device)

    model = create_model(cfg.model.name, n_classes=n_classes, **cfg.model.params)
    if cfg.train.init_from:
        init_weights_from(model, cfg)
    if cfg.quantize == "int8-qat":  # fake quantisation from the first step (conv-BN folded in training)
        model = int8.prepare(model, example_input(model), qat=True)
    start_epoch, best = 1, {"epoch": 0, "val_accuracy": -1.0}
    if state is not None:
        model.load_state_dict(state["model"])
    model = model.to(device)
    net: nn.Module = model
    if d.active:
        if device.type == "cuda" and cfg.train.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(net.parameters(), cfg.train)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"]) + 1
        best = dict(state["best"])
        if d.is_main:
            _truncate_metrics(run_dir / "metrics.jsonl", int(state["epoch"]))
        log.info("resuming %s at epoch %d", run_dir, start_epoch)
    elif d.is_main and (run_dir / "metrics.jsonl").exists():
        (run_dir / "metrics.jsonl").unlink()
    if d.active:
        torch.manual_seed(cfg.train.seed * 1000 + d.rank + start_epoch)  # distinct dropout masks per rank

    recipe = BatchRecipe(cfg.augment, cfg.train, n_classes, student=model, frontend=cfg.frontend).to(device)
    if state is not None and recipe.ema is not None:
        if "ema" not in state:
            raise ConfigError(f"{run_dir}/last.pt: has no mean-teacher state to resume")
        recipe.ema.load_state_dict(state["ema"])
    extras: dict[str, np.ndarray] = {}  # per training clip, aligned with train_rows
    if cfg.train.kd_logits:
        fold = splits.train + splits.val
        joined = join_logits(cfg.train.kd_logits, [c.filename for c in fold], tuple(splits.index.classes))
        extras["teacher"] = joined[: len(splits.train)]
    source, source_rows = splits.features, train_rows
    if cfg.augment.waveform:  # waveform augmentation: read clips, compute log-mel per batch
        paths = [splits.index.path(c) for c in splits.train]
        if not d.is_main:
            d.barrier()  # rank 0 fills the waveform cache first
        source = cached_waveforms(
            cfg.frontend.sample_rate,
            cfg.frontend.clip_samples,
            paths,
            cfg.data.cache_dir,
            cfg.data.workers,
            progress,
        )
        if d.is_main:
            d.barrier()
        source_rows = np.arange(len(splits.train))
    if cfg.augment.device_translation_p > 0 or cfg.augment.dir_p > 0:
        extras["is_reference"] = np.array([c.device == "a" for c in splits.train])
    if cfg.augment.device_translation_p > 0:
        transfers = learn_device_transfer(splits.train, splits.features, train_rows)
        if not transfers:
            raise ConfigError(
                "augment.device_translation_p: no training clip has a parallel device-A recording"
            )
        translate = DeviceTranslation(transfers, norm.std, cfg.augment.device_translation_p)
        recipe.set_device_translation(translate.to(device))
        if d.is_main:
            atomic_write_json(run_dir / "device_transfer.json", {k: v.tolist() for k, v in transfers.items()})
    pruner = None
    if cfg.prune.target > 0:
        try:
            pruner = Pruner(model, cfg.prune.scope, tuple(cfg.prune.exclude))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if state is not None:
            if "pruner" not in state:
                raise ConfigError(f"{run_dir}/last.pt: has no pruning state to resume")
            pruner.load_state_dict(state["pruner"])
    per_rank_batch = cfg.train.batch_size // d.world
    val_mine = np.arange(d.rank, len(val_rows), d.world)
    select_after = min(cfg.train.select_after, cfg.train.epochs - 1)
    for epoch in range(start_epoch, cfg.train.epochs + 1):
        order = epoch_order(len(train_rows), epoch, cfg.train.seed, d)
        if pruner is not None:
            p = cfg.prune
            pruner.update(target_sparsity(epoch, p.target, p.start_epoch, p.ramp_epochs, p.schedule))
        lr = learning_rate(cfg.train, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        bar = tqdm(
            total=len(order),
            desc=f"epoch {epoch}/{cfg.train.epochs}",
            unit="clip",
            disable=not progress,
            leave=False,
        )
        tr = train_one_epoch(
            net,
            norm,
            optimizer,
            batches(source, source_rows[order], train_y[order], per_rank_batch),
            device,
            recipe,
            bar,
            {k: v[order] for k, v in extras.items()},
            pruner,
        )
        bar.close()
        train_seconds = time.perf_counter() - t0
        logits, labels = predict_logits(
            model,
            norm,
            batches(splits.features, val_rows[val_mine], val_y[val_mine], cfg.train.eval_batch_size),
            device,
        )
        va = loss_and_accuracy(logits, labels)
        tl, tc, tn, vl, vc, vn = d.sum(
            tr["loss"] * tr["n"],
            tr["accuracy"] * tr["n"],
            tr["n"],
            va["loss"] * len(labels),
            va["accuracy"] * len(labels),
            len(labels),
        )
        record = {
            "epoch": epoch,
            "train_loss": tl / tn,
            "train_accuracy": tc / tn,
            "val_loss": vl / vn,
            "val_accuracy": vc / vn,
            "lr": lr,
            **({"sparsity": round(pruner.zeros() / pruner.total(), 6)} if pruner is not None else {}),
            "train_clips": tn,
            "train_seconds": round(train_seconds, 3),
        }
        at_target = pruner is None or pruner.sparsity >= cfg.prune.target - 1e-9
        if epoch > select_after and at_target and record["val_accuracy"] > best["val_accuracy"]:
            best = {"epoch": epoch, "val_accuracy": record["val_accuracy"], "val_loss": record["val_loss"]}
            if d.is_main:
                save_checkpoint({"model": model.state_dict(), "epoch": epoch}, run_dir / "best.pt")
        record["best_epoch"] = best["epoch"]
        if d.is_main:
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "torch_rng": torch.get_rng_state(),
                    "best": best,
                    "config": plain(cfg.to_dict()),
                    **({"ema": recipe.ema.state_dict()} if recipe.ema is not None else {}),
                    **({"pruner": pruner.state_dict()} if pruner is not None else {}),
                },
                run_dir / "last.pt",
            )
        if progress:
            print(
                f"epoch {epoch}: train loss {record['train_loss']:.3f} acc {record['train_accuracy']:.3f} | "
                f"val loss {record['val_loss']:.3f} acc {record['val_accuracy']:.3f} | best epoch {best['epoch']}",
                flush=True,
            )
    d.barrier()
    summary = {
        "run_dir": str(run_dir),
        "best": best,
        "shipped": None,
        "train_clips": len(train_rows),
        "val_clips": len(val_rows),
        "world_size": d.world,
    }
    if not d.is_main:
        return summary

    best_state = load_checkpoint(run_dir / "best.pt")["model"]
    model.load_state_dict(best_state)
    model = model.cpu()
    artifact = {
        "format": "tinyasc-model-1",
        "model_name": cfg.model.name,
        "model_params": plain(dict(cfg.model.params)),
        "classes": list(splits.index.classes),
        "frontend": asdict(cfg.frontend),
        "norm_mean": norm.mean.cpu(),
        "norm_std": norm.std.cpu(),
        "best_epoch": best["epoch"],
        "storage": "qat" if cfg.quantize == "int8-qat" else "float32",
        "state": {k: v.cpu() for k, v in model.state_dict().items()},
    }
    save_checkpoint(artifact, run_dir / "model.pt")
    calibration = calibration_batches(splits.features, train_rows, norm.cpu(), cfg)
    summary["shipped"] = write_shipped_model(run_dir, artifact, model, cfg.quantize, calibration)
    return summary


def calibration_batches(features: np.ndarray, rows: np.ndarray, norm: nn.Module, cfg: Config):
    """A callable giving normalised batches of ``cfg.calibration_clips`` training clips (a seeded draw)."""

    def gen():
        rng = np.random.default_rng(cfg.train.seed)
        pick = np.sort(rng.permutation(rows)[: cfg.calibration_clips])
        dummy = np.zeros(len(pick), dtype=np.int64)
        with torch.no_grad():
            for x, _, _ in batches(features, pick, dummy, cfg.train.eval_batch_size):
                yield norm(x)

    return gen


def init_weights_from(model: nn.Module, cfg: Config) -> None:
    """Start from the weights of ``train.init_from`` (a float32 or float16 tinyasc model file of the same
    architecture; a 1-bit model may start from the float model it binarizes)."""
    path = Path(cfg.train.init_from)
    art = load_float_artifact(path, "fine-tuning (train.init_from)")

    def arch(params: dict) -> dict:
        return {k: v for k, v in params.items() if not k.startswith("binary")}

    if art["model_name"] != cfg.model.name or arch(art["model_params"]) != arch(dict(cfg.model.params)):
        raise ConfigError(
            f"train.init_from: {path} holds {art['model_name']} {art['model_params']}; the config builds "
            f"{cfg.model.name} {dict(cfg.model.params)}"
        )
    load_as_stored(model, art["state"])


def write_shipped_model(run_dir: Path, artifact: dict, model, precision: str, calibration=None) -> str:
    """Store the model as it ships (``compress/ship.py``) and write its size report; returns the file name."""
    storage = storage_of(precision)
    if storage == "float32" and artifact["storage"] == "float32":
        stored = artifact  # model.pt is what ships
    else:
        state, extra = stored_state(model, precision, calibration)
        stored = dict(artifact, storage=storage, state=state, **extra)
        save_checkpoint(stored, run_dir / FILE_NAMES[storage])
    report = size_report(stored)
    name = FILE_NAMES[storage]
    atomic_write_json(run_dir / "size.json", dict(report.to_dict(), model_file=name))
    atomic_write_text(run_dir / "size.txt", report.table() + "\n")
    return name


def _gather(features: np.ndarray, rows: np.ndarray, chunk: int = 1024) -> np.ndarray:
    return np.concatenate([np.asarray(features[rows[i : i + chunk]]) for i in range(0, len(rows), chunk)])


def _truncate_metrics(path: Path, last_epoch: int) -> None:
    if not path.exists():
        return
    keep = [
        ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["epoch"] <= last_epoch
    ]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def load_run_config(run_dir: str | Path) -> Config:
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir}: not a tinyasc run (no config.yaml)")
    return config_from_dict(yaml.safe_load(path.read_text()))
