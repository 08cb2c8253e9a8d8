"""``tinyasc compress RUN --method ... --out NEW``: compress a trained run into a new run directory.

A method is a chain joined by ``+``: an optional ``prune`` first, then at most one storage step:

- ``float32`` / ``float16``: the trained weights as they are, or cast (post-training, as the baseline);
- ``int8-ptq``: post-training static quantisation calibrated on training clips (compress/int8.py);
- ``int8-qat``: fine-tune with fake quantisation, then convert to int8;
- ``binary``: packed 1-bit weights; a run trained 1-bit is packed as it is, a float run is first
  fine-tuned 1-bit (sign times a per-layer scale, straight-through gradient) from its weights.

``prune`` fine-tunes from the source weights with magnitude pruning ramping to ``--target`` sparsity (or
to the sparsity that brings the stored model to ``--target-bytes``) over ``--ramp-epochs`` (default half
the fine-tune) at a constant lr, keeps the masks during the rest of the fine-tune, where the lr decays,
so the zeros are permanent, then stores at the chain's storage step (default: the source's). Steps that train run the ordinary trainer (``train.init_from`` = the source's ``model.pt``,
the source's config, recipe and data, ``--epochs`` at ``--lr`` with cosine decay, the best validation
accuracy among the epochs at the target sparsity); the others write the stored model directly.

The new run is built in ``NEW.partial`` (``RunDir.staging``) and renamed to ``NEW`` when complete (model file, size report,
``compress.json``, and the evaluation on fold1_evaluate unless ``evaluate=False``); the source run is
only read. An interrupted fine-tune continues with ``resume=True``.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tinyasc import artifact
from tinyasc.compress.prune import prunable
from tinyasc.compress.size import model_size
from tinyasc.config import Config, ConfigError, config_from_dict, merge_config, parse_overrides, plain
from tinyasc.data.dataset import prepare_splits
from tinyasc.evaluate.run import evaluate_run
from tinyasc.rules import get_rules
from tinyasc.rundir import RunDir
from tinyasc.storage import COMPRESS_STEPS, SIZE_PRECISIONS, shipped_storage
from tinyasc.train.run import calibration_batches, fit

STORAGE_STEPS = COMPRESS_STEPS  # --method storage step -> the config's quantize value
TRAINING_STEPS = ("prune", "int8-qat")


@dataclass
class CompressOptions:
    target: float | None = None  # prune: sparsity
    target_bytes: int | None = None  # prune: the sparsity that stores at most this many bytes
    scope: str = "global"
    schedule: str = "linear"
    ramp_epochs: int | None = None  # default: half the fine-tune
    exclude: tuple[str, ...] = ()
    epochs: int | None = None  # fine-tune epochs (default 10)
    lr: float | None = None  # fine-tune peak lr (default: a tenth of the source's)
    calibration_clips: int | None = None  # int8-ptq
    overrides: list[str] = field(default_factory=list)  # more config keys for the fine-tune
    rules: str | None = None  # the edition whose verdict the new run carries (default: the source's)


class CompressError(ValueError):
    pass


def parse_method(method: str) -> tuple[bool, str | None]:
    """``"prune+int8-ptq"`` -> ``(prune, storage step)``; a clear error for anything else."""
    steps = [s.strip() for s in method.split("+") if s.strip()]
    known = ("prune", *STORAGE_STEPS)
    for s in steps:
        if s not in known:
            raise CompressError(f"--method: unknown step {s!r}; expected one of {', '.join(known)}")
    if not steps:
        raise CompressError("--method: empty; e.g. int8-ptq or prune+float16")
    prune = steps[0] == "prune"
    rest = steps[1:] if prune else steps
    if "prune" in rest:
        raise CompressError(f"--method {method}: prune comes once and first (it changes the float weights)")
    if len(rest) > 1:
        raise CompressError(
            f"--method {method}: {' and '.join(rest)} are both storage formats; a model ships in one"
        )
    return prune, (rest[0] if rest else None)


def _check_options(prune: bool, storage: str | None, trains: bool, o: CompressOptions) -> None:
    if prune:
        if (o.target is None) == (o.target_bytes is None):
            raise CompressError("prune: give exactly one of --target (a sparsity) and --target-bytes")
        if o.target is not None and not 0 < o.target < 1:
            raise CompressError(f"--target {o.target}: a sparsity must lie in (0, 1)")
        if o.scope not in ("global", "layer"):
            raise CompressError(f"--scope {o.scope!r}: expected global or layer")
        if storage == "binary":
            raise CompressError(
                "--method prune+binary: 1-bit weights are +-1 times a scale, never zero; pruning them saves "
                "nothing by the 2021 rule"
            )
    else:
        given = [
            n
            for n, v in (
                ("--target", o.target),
                ("--target-bytes", o.target_bytes),
                ("--ramp-epochs", o.ramp_epochs),
            )
            if v is not None
        ]
        if given or o.exclude:
            raise CompressError(f"{', '.join(given) or '--exclude'}: pruning options need prune in --method")
    if storage != "int8-ptq" and o.calibration_clips is not None:
        raise CompressError("--calibration-clips: only int8-ptq calibrates")
    if not trains and (o.epochs is not None or o.lr is not None or o.overrides):
        raise CompressError(
            f"--epochs/--lr/key=value overrides: the method {storage} is post-training here and does not train"
        )
    if o.epochs is not None and o.epochs < 1:
        raise CompressError(f"--epochs {o.epochs}: need at least 1")
    if o.lr is not None and o.lr <= 0:
        raise CompressError(f"--lr {o.lr}: need > 0")
    if o.ramp_epochs is not None and o.epochs is not None and not 1 <= o.ramp_epochs <= o.epochs:
        raise CompressError(f"--ramp-epochs {o.ramp_epochs}: must lie in 1..--epochs ({o.epochs})")


def sparsity_for_bytes(model: torch.nn.Module, precision: str, limit: int, exclude: tuple[str, ...]) -> float:
    """The global sparsity of the prunable weights that stores ``model`` at ``precision`` in ``limit`` bytes.

    Stored bytes are linear in the number of non-zero prunable weights: measured dense and with every
    prunable weight zero, the sparsity follows (rounded up to 1e-4). For int8 the count uses the
    per-channel estimate (``compress/size.py``) and aims 0.5% (at least 256 bytes) below the limit for
    what the estimate leaves out; the compressed run's own report is the exact figure.
    """
    count = SIZE_PRECISIONS.get(precision, precision)
    dense = model_size(model, count).nonzero_bytes
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for w in prunable(zeroed, exclude).values():
            w.zero_()
    floor = model_size(zeroed, count).nonzero_bytes
    if limit >= dense:
        raise CompressError(
            f"--target-bytes {limit:,}: the model stores {dense:,} bytes at {count} without pruning; "
            "no pruning is needed (drop prune from --method)"
        )
    if limit < floor:
        raise CompressError(
            f"--target-bytes {limit:,} cannot be reached: with every prunable weight zero the model still "
            f"stores {floor:,} bytes at {count} (batch norm, biases, scales, excluded layers)"
        )
    if count == "int8":  # the estimate misses the requantisation scales of adds and pools: aim lower
        limit -= max(256, limit // 200)
    s = (dense - limit) / (dense - floor)
    return min(math.ceil(s * 1e4) / 1e4, 0.9999)


def compress_run(
    source: str | Path,
    out: str | Path,
    method: str,
    options: CompressOptions | None = None,
    resume: bool = False,
    evaluate: bool = True,
    progress: bool = True,
) -> dict:
    """Compress the run at ``source`` into the new run ``out``; returns ``compress.json``'s content."""
    o = options or CompressOptions()
    src, source, out = RunDir(source), Path(source), Path(out)
    if not src.is_run:
        raise CompressError(
            f"{source}: not a finished tinyasc run (needs {src.CONFIG} and {src.float_model_path.name})"
        )
    src_cfg = src.config()
    art = artifact.load_float(src.float_model_path, "compress", "a quantisation-aware run ships int8 already")
    prune, step = parse_method(method)
    if step is None:  # prune alone ships as the source did
        step = {"int8": "int8-ptq"}.get(src_cfg.quantize, src_cfg.quantize)
    quantize = STORAGE_STEPS[step]  # the config's quantize value (int8-qat trains; its storage is int8)
    src_binary = bool(src_cfg.model.params.get("binary", False))
    if src_binary and step in ("int8-ptq", "int8-qat"):
        raise CompressError(f"{source}: a 1-bit model; {step} applies to float models")
    if src_binary and step in ("float16", "float32"):
        raise CompressError(
            f"{source}: a 1-bit model ships as binary (its float shadow weights are not the model)"
        )
    trains = prune or step == "int8-qat" or (step == "binary" and not src_binary)
    _check_options(prune, step, trains, o)
    rules = o.rules or src_cfg.rules
    if prune and get_rules(rules).counting != "nonzero-bytes":
        raise CompressError(
            f"--method {method}: {rules} counts {get_rules(rules).counted_as}, so pruned zeros still count; "
            "quantise instead, or train a narrower model"
        )

    if out.exists():
        raise CompressError(
            f"{out}: exists already; choose a new folder (the source run is never overwritten)"
        )
    if out.resolve() == source.resolve():
        raise CompressError("--out must differ from the source run")
    staged = RunDir(out).staging()
    partial = staged.path
    if partial.exists() and not resume:
        raise CompressError(
            f"{partial}: an interrupted compression; pass --resume to continue it or delete the folder"
        )

    values = plain(src_cfg.to_dict())
    values["quantize"] = quantize
    values["rules"] = rules
    record: dict = {
        "source": str(source.resolve()),
        "method": method,
        "storage": str(shipped_storage(quantize)),
        "trained": trains,
    }
    if o.calibration_clips is not None:
        values["calibration_clips"] = o.calibration_clips
    model = artifact.load_stored(art)
    if prune:
        if o.target is None:
            o.target = sparsity_for_bytes(model, quantize, o.target_bytes, tuple(o.exclude))
        record["sparsity"] = o.target
        record["target_bytes"] = o.target_bytes
    if trains:
        epochs = o.epochs or 10
        lr = o.lr or src_cfg.train.lr / 10
        train = dict(values["train"])
        train.update(
            init_from=str(src.float_model_path.resolve()),
            epochs=epochs,
            lr=lr,
            schedule="cosine",
            warmup_epochs=0,
            decay_start=0,
            lr_min=0.0,
            select_after=0,
        )
        values["train"] = train
        if step == "binary":
            values["model"] = dict(values["model"], params=dict(values["model"]["params"], binary=True))
        if prune:
            ramp = o.ramp_epochs or max(1, math.ceil(epochs / 2))
            values["prune"] = dict(
                target=o.target,
                scope=o.scope,
                start_epoch=1,
                ramp_epochs=ramp,
                schedule=o.schedule,
                exclude=list(o.exclude),
            )
            # the lr holds while the sparsity ramps and decays over the epochs at the target
            values["train"]["decay_start"] = ramp if ramp < epochs else 0
        elif step == "binary":  # +-1 weights have no zeros to keep
            values["prune"] = dict(values["prune"], target=0.0)
        elif src_cfg.prune.target > 0:  # a pruned source keeps its zeros: the same sparsity from epoch 1
            values["prune"] = dict(values["prune"], start_epoch=1, ramp_epochs=1)
        values = merge_config(values, parse_overrides(o.overrides))
        record.update(epochs=epochs, lr=lr)
    try:
        cfg = config_from_dict(values)
    except ConfigError as e:
        raise CompressError(str(e)) from None

    t0 = time.time()
    existed = partial.exists()
    try:
        if trains:
            fit(cfg, partial, resume=resume and staged.has_checkpoint, progress=progress)
        else:
            _post_training(cfg, art, model, staged)
    except BaseException:
        # Keep a staging folder only when it holds a fine-tune to resume; one that failed before its first
        # checkpoint would just demand --resume for nothing.
        if not existed and not staged.has_checkpoint:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    record["seconds"] = round(time.time() - t0, 1)
    record["size"] = staged.size()
    record["source_size_bytes"] = src.size().get("nonzero_bytes")
    if evaluate:
        m = evaluate_run(partial, progress=progress)
        record["evaluation"] = {
            "accuracy": m["overall"]["accuracy"],
            "logloss": m["overall"]["logloss"],
            "unseen_accuracy": m.get("group_wise", {}).get("unseen", {}).get("accuracy"),
        }
    staged.save_compress_record(record)
    partial.rename(out)
    record["out"] = str(out)
    return record


def _post_training(cfg: Config, art: dict, model: torch.nn.Module, run: RunDir) -> None:
    """Store a trained float model at ``cfg.quantize`` without training (float16, int8 PTQ, binary pack)."""
    with run.lock("tinyasc compress"):
        run.save_config(cfg)
        run.save_float_model(art)
        calibration = None
        if cfg.quantize == "int8":
            splits = prepare_splits(cfg.data, cfg.frontend)
            rows = splits.rows(splits.train)
            calibration = calibration_batches(splits.features, rows, artifact.normalizer_of(art), cfg)
        run.ship(art, model, cfg.quantize, calibration, cfg.rules)
