"""fit(config): data, band normalisation, model, optimiser, epochs, model selection, checkpoints, shipping.

``fit`` reads top to bottom: set-up, the epoch loop, finish. Training features that act inside the
loop (QAT, pruning, the mean teacher, device translation) are hooks (``train/hooks.py``); the files the
run writes are named by ``rundir.py``. Under torchrun, ``fit`` trains with DDP (``train/distributed.py``):
rank 0 writes every file, the others wait at the barriers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from tinyasc import artifact
from tinyasc.compress.complexity import parameter_bytes, verdict
from tinyasc.compress.size import LIMIT_BYTES, head_note, model_size, storage_tensors
from tinyasc.config import Config, ConfigError, TrainConfig, flatten, plain, with_absolute_paths
from tinyasc.data.cache import cached_waveforms
from tinyasc.data.dataset import Splits, batches, prepare_splits
from tinyasc.data.loader import BatchLoader
from tinyasc.distill.logits import join_logits
from tinyasc.engine import autocast_dtype, compute_threads, cores, loader_workers
from tinyasc.frontend import Normalizer, band_statistics
from tinyasc.models import get_model_info
from tinyasc.rules import get_rules
from tinyasc.rundir import RunDir
from tinyasc.storage import SIZE_PRECISIONS, Storage
from tinyasc.train.distributed import Dist, epoch_order, init_distributed, shutdown
from tinyasc.train.hooks import QuantizationAware, hook_states, load_hook_states, make_hooks
from tinyasc.train.loop import float32_depthwise_layers, loss_and_accuracy, predict_logits, train_one_epoch
from tinyasc.train.recipe import BatchRecipe
from tinyasc.train.trackers import make_trackers
from tinyasc.zoo import fit_width

log = logging.getLogger(__name__)


def fit(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True) -> dict:
    """Train per ``cfg`` into ``run_dir``; returns a summary. ``cfg`` was validated when it loaded."""
    d = init_distributed()
    progress = progress and d.is_main
    with contextlib.ExitStack() as finish:
        finish.callback(shutdown, d)
        # --- set-up: the run folder, the data, the model and everything that trains it
        run = RunDir(run_dir)
        cfg = with_absolute_paths(cfg)  # config.yaml must name the same files from any directory
        params = model_params(cfg)  # before any data is read
        if d.is_main:
            finish.enter_context(run.lock("tinyasc train"))  # one writer per run directory
        state = open_run(run, cfg, resume, d)  # the interrupted run's last.pt on --resume, else None
        device = setup_process(cfg, d, progress)
        check_precision(cfg, device)  # before any data is read
        splits = load_splits(cfg, d, progress)
        train_rows, val_rows = splits.rows(splits.train), splits.rows(splits.val)
        train_y, val_y = splits.labels(splits.train), splits.labels(splits.val)
        norm = fold_normalizer(splits, cfg.frontend.n_mels).to(device)

        params = fitted_params(cfg, params, len(splits.index.classes), progress)  # model.fit_bytes
        model = artifact.build_model(cfg.model.name, len(splits.index.classes), params)
        if progress:
            warn_over_budget(model, cfg, len(splits.index.classes))
        if cfg.train.init_from:
            init_weights_from(model, cfg, params)
        hooks = make_hooks(cfg, splits, norm)
        for hook in hooks:
            model = hook.wrap_model(model)  # QAT: the fake-quantised graph replaces the model
        if state is not None:
            model.load_state_dict(state["model"])
        layout = memory_format(model, hooks)
        amp_dtype, scaler = mixed_precision(cfg, device, model, hooks, progress)
        model = model.to(device, memory_format=layout)
        net = data_parallel(model, cfg, d, device)
        if cfg.train.compile:
            net = compiled(net, device, progress)
        optimizer = make_optimizer(net.parameters(), cfg.train)
        if progress:
            note_schedule(cfg.train)
        start_epoch, best = 1, {"epoch": 0, "val_accuracy": -1.0}
        if state is not None:  # optimiser and RNG exactly as they were: a bit-identical continuation
            start_epoch, best = restore_optimizer(state, optimizer, run)
        if d.active:
            torch.manual_seed(cfg.train.seed * 1000 + d.rank + start_epoch)  # distinct dropout masks per rank
        recipe = BatchRecipe(cfg.augment, cfg.train, len(splits.index.classes), cfg.frontend).to(device)
        for hook in hooks:
            hook.attach(model, recipe, device)
        if state is not None:
            load_hook_states(hooks, state.get("hooks", state), f"{run.path / run.LAST}")
        source, source_rows, extras = training_inputs(cfg, splits, d, progress)
        loader = BatchLoader(source, batch_readers(cfg, device), device.type == "cuda", cfg.train.seed)
        trackers = start_records(run, cfg, splits, state, start_epoch, hooks) if d.is_main else []

        # --- the epoch loop: train, validate, select, checkpoint
        per_rank_batch = cfg.train.batch_size // d.world
        val_mine = np.arange(d.rank, len(val_rows), d.world)  # each rank validates its share
        select_after = min(cfg.train.select_after, cfg.train.epochs - 1)
        for epoch in range(start_epoch, cfg.train.epochs + 1):
            order = epoch_order(len(train_rows), epoch, cfg.train.seed, d)
            for hook in hooks:
                hook.start_epoch(epoch)
            lr = learning_rate(cfg.train, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.perf_counter()
            with _progress_bar(len(order), f"epoch {epoch}/{cfg.train.epochs}", progress) as bar:
                tr = train_one_epoch(
                    net,
                    norm,
                    optimizer,
                    loader.epoch(source_rows[order], train_y[order], per_rank_batch),
                    device,
                    recipe,
                    bar,
                    {k: v[order] for k, v in extras.items()},
                    hooks,
                    amp_dtype,
                    scaler,
                    layout,
                )
            train_seconds = time.perf_counter() - t0
            val_batches = batches(
                splits.features, val_rows[val_mine], val_y[val_mine], cfg.train.eval_batch_size
            )
            va = loss_and_accuracy(*predict_logits(model, norm, val_batches, device))
            record = epoch_record(epoch, lr, tr, va, len(val_mine), d, train_seconds, hooks)
            # The official StasherCallback: the best validation accuracy after `select_after` epochs
            # (or the lowest validation log loss, train.select_metric).
            selectable = epoch > select_after and all(h.selectable() for h in hooks)
            improved = record["val_accuracy"] is None or better(record, best, cfg.train.select_metric)
            if selectable and improved:  # no validation part: the last selectable epoch is kept
                best = {k: record[k] for k in ("epoch", "val_accuracy", "val_loss")}
                if d.is_main:
                    run.save_best({"model": model.state_dict(), "epoch": epoch})
            record["best_epoch"] = best["epoch"]
            if d.is_main:
                run.append_metrics(record)
                for tracker in trackers:
                    tracker.log(record)
                run.save_last(training_state(cfg, model, optimizer, epoch, best, hooks))
            if progress:
                print(_epoch_line(record), flush=True)

        # --- finish: the selected epoch becomes model.pt and ships as cfg.quantize
        for tracker in trackers:
            tracker.close()
        d.barrier()
        shipped = ship_selected(run, cfg, params, model, norm, splits, best) if d.is_main else None
        return {
            "run_dir": str(run.path),
            "best": best,
            "shipped": shipped,
            "train_clips": len(train_rows),
            "val_clips": len(val_rows),
            "world_size": d.world,
        }


# --- set-up -----------------------------------------------------------------------------------------


def model_params(cfg: Config) -> dict:
    """``model.params`` as the model is built: the frames follow the frontend's clip (a model takes
    any clip length; the baseline's second pooling spans the time axis), the mel bands must match."""
    try:
        info = get_model_info(cfg.model.name)
    except KeyError as e:
        raise ConfigError(f"model.name: {e.args[0]}") from None
    params = dict(cfg.model.params)
    n_mels = params.get("n_mels", info.n_mels)
    if cfg.frontend.n_mels != n_mels:
        raise ConfigError(
            f"model {cfg.model.name!r} is built for {n_mels} mel bands; the frontend gives {cfg.frontend.n_mels}: "
            f"set frontend.n_mels={n_mels}, or model.params={{n_mels: {cfg.frontend.n_mels}}} to build it for them"
        )
    if cfg.frontend.n_frames != params.get("frames", info.frames):
        params["frames"] = cfg.frontend.n_frames
    return params


def open_run(run: RunDir, cfg: Config, resume: bool, d: Dist) -> dict | None:
    """Refuse a folder that holds a run unless resuming; returns the checkpoint to resume from."""
    if cfg.train.batch_size % d.world:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} (global) must divide by the {d.world} ranks"
        )
    if run.has_checkpoint and not resume:
        raise ConfigError(
            f"{run.path}: holds a run already; pass --resume to continue it or choose a new folder"
        )
    state = resume_state(run, cfg) if resume else None
    d.barrier()  # every rank has read the old state before rank 0 writes anything
    if d.is_main:
        run.path.mkdir(parents=True, exist_ok=True)
        run.save_config(cfg)
    return state


def resume_state(run: RunDir, cfg: Config) -> dict | None:
    """last.pt of the interrupted run, which must have the same config but for train.epochs."""
    if not run.has_checkpoint:
        return None
    state = run.load_last()
    old, new = (flatten(plain(c), keep=("params",)) for c in (dict(state["config"]), cfg.to_dict()))
    free = {"train.epochs", "data.cache_dir", "data.workers"}  # more epochs; where and how features cache
    differ = sorted(k for k in set(old) | set(new) if k not in free and old.get(k) != new.get(k))
    if differ:
        shown = "; ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in differ[:5])
        raise ConfigError(
            f"{run.path}: --resume with a different config than the interrupted run ({shown}); "
            "only train.epochs (and the feature cache's folder and workers) may change"
        )
    return state


def setup_process(cfg: Config, d: Dist, progress: bool = False) -> torch.device:
    """Threads, seeds and the device of this process; the engine settings are printed in the log."""
    device = select_device(cfg.train.device)
    if device.type == "cuda" and d.active:
        device = torch.device("cuda", d.local_rank)
    readers = batch_readers(cfg, device)
    threads = compute_threads(workers=readers if device.type == "cpu" else 0, requested=cfg.train.threads)
    torch.set_num_threads(threads)
    if progress:
        alloc = (
            "system (TINYASC_ALLOCATOR=system)"
            if os.environ.get("TINYASC_ALLOCATOR") == "system"
            else "tuned"
        )
        capped = (
            f" (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})" if "OMP_NUM_THREADS" in os.environ else ""
        )
        print(
            f"engine: {threads} torch thread(s) on {cores()} core(s){capped}, {readers} batch reader process(es), "
            f"allocator {alloc}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}",
            flush=True,
        )
    seed_everything(cfg.train.seed)
    return device


def batch_readers(cfg: Config, device: torch.device) -> int:
    """``train.loader_workers`` resolved for this process (torchrun's LOCAL_WORLD_SIZE processes share
    the machine's cores)."""
    return loader_workers(cfg.train.loader_workers, device.type, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


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


def load_splits(cfg: Config, d: Dist, progress: bool) -> Splits:
    """The index, its splits and the feature cache; rank 0 fills the cache, the others then read it."""
    if not d.is_main:
        d.barrier()
    splits = prepare_splits(cfg.data, cfg.frontend, progress=progress)
    if d.is_main:
        d.barrier()
    if len(splits.train) == 0 or (len(splits.val) == 0 and cfg.data.validation != "none"):
        raise ConfigError(
            f"{cfg.data.root}: {len(splits.train)} training and {len(splits.val)} validation clips; need both "
            "(or data.validation=none to train on every clip and keep the last epoch)"
        )
    if progress:
        v = splits.validation
        print(
            f"data: {v['train']} training and {v['validation']} validation clips of {v['of']} "
            f"(validation: {v['method']}{' fold ' + v['fold'] if 'fold' in v else ''}); "
            f"{len(splits.evaluate)} evaluate clips",
            flush=True,
        )
    return splits


def fold_normalizer(splits: Splits, n_mels: int) -> Normalizer:
    """Band mean and std over all frames of all training-fold files (validation part included), as
    dcase_util normalises the baseline's features."""
    all_train = np.sort(np.concatenate([splits.rows(splits.train), splits.rows(splits.val)]))
    mean, std = band_statistics(_gather(splits.features, all_train))
    norm = Normalizer(n_mels)
    norm.mean.copy_(torch.from_numpy(mean))
    norm.std.copy_(torch.from_numpy(std))
    return norm


def init_weights_from(model: nn.Module, cfg: Config, params: dict) -> None:
    """Start from the weights of ``train.init_from`` (a float32 or float16 tinyasc model file of the same
    architecture; a 1-bit model may start from the float model it binarizes)."""
    path = Path(cfg.train.init_from)
    art = artifact.load_float(path, "fine-tuning (train.init_from)")

    def arch(params: dict) -> dict:
        return {k: v for k, v in params.items() if not k.startswith("binary")}

    if art["model_name"] != cfg.model.name or arch(art["model_params"]) != arch(params):
        raise ConfigError(
            f"train.init_from: {path} holds {art['model_name']} {art['model_params']}; the config builds "
            f"{cfg.model.name} {params}"
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in art["state"].items()})


def fitted_params(cfg: Config, params: dict, n_classes: int, progress: bool) -> dict:
    """``params`` with the widths that fit ``model.fit_bytes`` at the shipped precision for this many
    classes (``zoo.fit_width``), or unchanged when no byte target is set."""
    if cfg.model.fit_bytes is None:
        return params
    fitted, nbytes = fit_width(
        cfg.model.name, n_classes, cfg.model.fit_bytes, SIZE_PRECISIONS[cfg.quantize], params
    )
    if progress:
        widths = {k: v for k, v in fitted.items() if params.get(k) != v}
        print(
            f"model.fit_bytes={cfg.model.fit_bytes:,}: {cfg.model.name} for {n_classes} classes with {widths} "
            f"stores {nbytes:,} bytes at {SIZE_PRECISIONS[cfg.quantize]}",
            flush=True,
        )
    return fitted


def warn_over_budget(model: nn.Module, cfg: Config, n_classes: int) -> None:
    """Say before training when the model as it will ship is over the 128,000-byte limit for this many
    classes, and what its classifier head costs (the part that grows with the classes); under the rules
    of 2022 and later, the edition's verdict on the model as it will ship, always."""
    precision = SIZE_PRECISIONS.get(cfg.quantize)
    if precision is None:  # 1-bit: counted when the signs are packed
        return
    report = model_size(model, precision)
    if cfg.rules != "dcase2021":
        stored = parameter_bytes(storage_tensors(model, precision))
        v = verdict(get_rules(cfg.rules), model, cfg.frontend.duration, stored, report.nonzero_bytes)
        status = "passes" if v.passes else "FAILS: " + "; ".join(v.reasons)
        subsets = get_rules(cfg.rules).subsets
        if subsets and cfg.data.subset not in subsets:
            status += (
                f"; note: {cfg.rules} trains on the subsets {', '.join(f'{p}%' for p in subsets)} of the "
                f"training split (data.subset), this run on {cfg.data.subset or 'all of it'}"
            )
        print(
            f"rules {cfg.rules}: {v.params:,} parameters, {v.counted:,} {v.unit} counted, "
            f"{v.macs_per_second:,} MACs per second at {precision}: {status}",
            flush=True,
        )
        return
    if report.bytes > LIMIT_BYTES:
        note = head_note(model, report, n_classes) or ""
        print(
            f"note: {cfg.model.name} for {n_classes} classes stores {report.bytes:,} bytes at {precision} "
            f"(dense), over the {LIMIT_BYTES:,}-byte limit; {note}. Set model.fit_bytes=128000 to narrow it "
            "before training, prune or quantise it after training (tinyasc compress --target-bytes 128000), or "
            "choose a smaller variant (tinyasc size NAME --classes N)",
            flush=True,
        )


def data_parallel(model: nn.Module, cfg: Config, d: Dist, device: torch.device) -> nn.Module:
    """DDP around the model under torchrun (SyncBatchNorm on CUDA when asked); the model otherwise."""
    if not d.active:
        return model
    if device.type == "cuda" and cfg.train.sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def memory_format(model: nn.Module, hooks) -> torch.memory_format:
    """channels_last for the families that declare they train faster with it (measured per family);
    not for a model a hook replaced with its fake-quantised copy (QAT: plain convolutions in place of
    the family's own kernels, so the family's measurement does not apply)."""
    plain = not any(isinstance(h, QuantizationAware) for h in hooks)
    return (
        torch.channels_last if plain and getattr(model, "channels_last", False) else torch.contiguous_format
    )


def compiled(net: nn.Module, device: torch.device, progress: bool) -> nn.Module:
    """``train.compile``: the training forward through ``torch.compile``. The wrapper shares the
    parameters; validation, checkpoints and shipping keep using the plain model, so parameter names
    and the shipped file are those of an uncompiled run."""
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise ConfigError(
            "train.compile=true: torch.compile on the CPU needs a C++ compiler (g++ or clang++) on PATH; "
            "none was found (install one, or set train.compile=false)"
        )
    if progress:
        print("compile: training forward through torch.compile (the first steps compile it)", flush=True)
    return torch.compile(net)


def check_precision(cfg: Config, device: torch.device) -> None:
    """``train.precision`` is possible on ``device`` (float16 needs CUDA): a ConfigError if not."""
    try:
        autocast_dtype(cfg.train.precision, device.type)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def mixed_precision(cfg: Config, device: torch.device, model: nn.Module, hooks, progress: bool) -> tuple:
    """``(autocast dtype or None, gradient scaler or None)`` of ``train.precision`` on ``device``.

    ``auto`` takes bfloat16 on a CPU only for the families that declare they train faster with it
    (``bfloat16_training``, measured per family), and on no device for a model a hook replaced with its
    fake-quantised copy (QAT: the quantisation grid is float32's)."""
    precision = cfg.train.precision
    if precision == "auto" and any(isinstance(h, QuantizationAware) for h in hooks):
        precision = "float32"
    dtype = autocast_dtype(precision, device.type, getattr(model, "bfloat16_training", False))
    if progress:
        chosen = "float32" if dtype is None else f"{str(dtype).replace('torch.', '')} autocast"
        if dtype == torch.bfloat16 and device.type == "cpu" and (n := float32_depthwise_layers(model)):
            chosen += f", its {n} strided or wider-than-3x3 depthwise convolution(s) in float32"
        print(f"precision: forward pass in {chosen} (train.precision={cfg.train.precision})", flush=True)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    return dtype, scaler


def make_optimizer(params, t: TrainConfig) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay
        )
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, eps=1e-7, weight_decay=t.weight_decay)  # eps: the Keras default


def decay_start(t: TrainConfig) -> int:
    """The epoch after which a cosine or linear decay begins: warm-up first, then ``decay_start``."""
    return max(t.warmup_epochs, t.decay_start)


def note_schedule(t: TrainConfig) -> None:
    """Says so when a decay would begin at or after the last epoch (it never begins)."""
    start = decay_start(t)
    if t.schedule != "constant" and start >= t.epochs:
        print(
            f"train: the {t.schedule} decay would begin after epoch {start}, at or past the last "
            f"({t.epochs}): the learning rate stays at {t.lr:g} after the warm-up",
            flush=True,
        )


def learning_rate(t: TrainConfig, epoch: int) -> float:
    """Learning rate of 1-based ``epoch``: linear warm-up, then constant, cosine or linear decay.

    The decay runs from the end of epoch ``max(warmup_epochs, decay_start)`` to ``lr_min`` at the last
    epoch; a decay that would begin at or after the last epoch (a config's ``train.epochs`` cut below
    its ``decay_start``) never begins, and the rate stays at ``lr``. A pure function of the epoch, so
    a resumed run continues the same schedule.
    """
    if epoch <= t.warmup_epochs:
        return t.lr * epoch / t.warmup_epochs
    if t.schedule == "constant":
        return t.lr
    start = decay_start(t)
    span = t.epochs - start
    # span <= 0: every epoch is at or before the decay's start (it used to jump to lr_min: a
    # config's 250 epochs cut to 40 below its decay_start of 50 trained at a learning rate of 0)
    p = min(max((epoch - start) / span, 0.0), 1.0) if span > 0 else 0.0
    if t.schedule == "cosine":
        return t.lr_min + (t.lr - t.lr_min) * 0.5 * (1 + math.cos(math.pi * p))
    return t.lr - (t.lr - t.lr_min) * p


def training_inputs(cfg: Config, splits: Splits, d: Dist, progress: bool) -> tuple:
    """``(source, rows, extras)``: the array batches are cut from, its rows of the training clips, and
    per-clip extras aligned with them (stored teacher logits, which clips are device-A recordings)."""
    extras: dict[str, np.ndarray] = {}
    if cfg.train.kd_logits:
        fold = splits.train + splits.val
        joined = join_logits(cfg.train.kd_logits, [c.filename for c in fold], tuple(splits.index.classes))
        extras["teacher"] = joined[: len(splits.train)]
    if cfg.augment.device_translation_p > 0 or cfg.augment.dir_p > 0:
        extras["is_reference"] = np.array([c.device == "a" for c in splits.train])
    if not cfg.augment.waveform:
        return splits.features, splits.rows(splits.train), extras
    # Waveform augmentation reads clips and computes the log-mel per batch; rank 0 fills the cache first.
    if not d.is_main:
        d.barrier()
    fe = cfg.frontend
    paths = [splits.index.path(c) for c in splits.train]
    source = cached_waveforms(
        fe.sample_rate, fe.clip_samples, paths, cfg.data.cache_dir, cfg.data.workers, progress
    )
    if d.is_main:
        d.barrier()
    return source, np.arange(len(splits.train)), extras


def start_records(
    run: RunDir, cfg: Config, splits: Splits, state: dict | None, start_epoch: int, hooks
) -> list:
    """metrics.jsonl as of the checkpoint (or empty), the split sizes, what hooks learned at set-up, the
    tracker sinks."""
    run.save_splits({**splits.validation, "evaluate": len(splits.evaluate)})
    if state is not None:
        run.truncate_metrics(start_epoch - 1)  # the epochs after the checkpoint train again
    else:
        run.clear_metrics()
    for hook in hooks:
        hook.save(run)
    return make_trackers(cfg, run)


# --- the epoch loop ---------------------------------------------------------------------------------


def better(record: dict, best: dict, metric: str) -> bool:
    """Whether this epoch's validation beats the best so far (strictly: ties keep the earlier epoch)."""
    if metric == "logloss":
        return record["val_loss"] < best.get("val_loss", math.inf)
    return record["val_accuracy"] > best["val_accuracy"]


def training_state(cfg: Config, model, optimizer, epoch: int, best: dict, hooks) -> dict:
    """What last.pt holds: enough to continue bit-identically after ``epoch``."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "torch_rng": torch.get_rng_state(),
        "best": best,
        "config": plain(cfg.to_dict()),
        "hooks": hook_states(hooks),
    }


def restore_optimizer(state: dict, optimizer, run: RunDir) -> tuple[int, dict]:
    """The optimiser and torch RNG of ``state``; returns (first epoch to train, best so far)."""
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resuming %s at epoch %d", run.path, int(state["epoch"]) + 1)
    return int(state["epoch"]) + 1, dict(state["best"])


def epoch_record(epoch, lr, tr: dict, va: dict, n_val: int, d: Dist, seconds: float, hooks) -> dict:
    """The metrics line of an epoch, summed over the ranks."""
    tl, tc, tn, vl, vc, vn = d.sum(
        tr["loss"] * tr["n"],
        tr["accuracy"] * tr["n"],
        tr["n"],
        va["loss"] * n_val,
        va["accuracy"] * n_val,
        n_val,
    )
    record = {
        "epoch": epoch,
        "train_loss": tl / tn,
        "train_accuracy": tc / tn,
        "val_loss": vl / vn if vn else None,  # None: trained without a validation part
        "val_accuracy": vc / vn if vn else None,
        "lr": lr,
    }
    for hook in hooks:
        record.update(hook.record())
    record.update(train_clips=tn, train_seconds=round(seconds, 3))
    return record


def _epoch_line(r: dict) -> str:
    val = (
        f"val loss {r['val_loss']:.3f} acc {r['val_accuracy']:.3f}"
        if r["val_accuracy"] is not None
        else "no validation"
    )
    return (
        f"epoch {r['epoch']}: train loss {r['train_loss']:.3f} acc {r['train_accuracy']:.3f} | {val} | "
        f"best epoch {r['best_epoch'] or '- (none selectable yet)'}"
    )


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="clip", disable=not enabled, leave=False)


# --- finish -----------------------------------------------------------------------------------------


def ship_selected(
    run: RunDir, cfg: Config, params: dict, model: nn.Module, norm: nn.Module, splits: Splits, best: dict
) -> str:
    """The selected epoch as ``model.pt``, then stored as ``cfg.quantize`` ships it; returns its file name."""
    model.load_state_dict(run.load_best()["model"])
    model = model.cpu()
    art = artifact.new_artifact(
        cfg.model.name,
        params,
        splits.index.classes,
        cfg.frontend,
        norm,
        best["epoch"],
        Storage.QAT if cfg.quantize == "int8-qat" else Storage.FLOAT32,
        model.state_dict(),
    )
    run.save_float_model(art)
    calibration = calibration_batches(splits.features, splits.rows(splits.train), norm.cpu(), cfg)
    return run.ship(art, model, cfg.quantize, calibration, cfg.rules)


def calibration_batches(features: np.ndarray, rows: np.ndarray, norm: nn.Module, cfg: Config):
    """A callable giving normalised batches of ``cfg.calibration_clips`` training clips (a seeded draw),
    the activation ranges of int8 post-training quantisation."""

    def gen():
        rng = np.random.default_rng(cfg.train.seed)
        pick = np.sort(rng.permutation(rows)[: cfg.calibration_clips])
        dummy = np.zeros(len(pick), dtype=np.int64)
        with torch.no_grad():
            for x, _, _ in batches(features, pick, dummy, cfg.train.eval_batch_size):
                yield norm(x)

    return gen


def _gather(features: np.ndarray, rows: np.ndarray, chunk: int = 1024) -> np.ndarray:
    return np.concatenate([np.asarray(features[rows[i : i + chunk]]) for i in range(0, len(rows), chunk)])
