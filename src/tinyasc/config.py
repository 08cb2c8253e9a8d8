"""Experiment configuration: frozen dataclasses, YAML files as diffs against the defaults, dotted overrides.

Defaults reproduce the DCASE 2021 Task 1A baseline (reference sections 1.1-1.3).

Every value is checked when a config is built (``config_from_dict``, so ``load_config`` and a run's
``config.yaml`` alike), before any data is read: its type (from the default), its choices (``Literal``
annotations), its range (``field(metadata=...)`` via ``at_least``/``between``) and the rules across keys
(``_cross_checks``). Every error is a ``ConfigError`` that names the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from tinyasc.io import atomic_write_text
from tinyasc.rules import RuleName
from tinyasc.storage import Quantize


class ConfigError(ValueError):
    """A config key or value that does not fit the schema; names the key and what was expected."""


def at_least(lo: float, default: Any, strict: bool = False) -> Any:
    """A field whose value must be >= lo (> lo when ``strict``); None passes where the default is None."""
    return field(default=default, metadata={"range": (lo, math.inf, strict, False)})


def between(lo: float, hi: float, default: Any, lo_open: bool = False, hi_open: bool = False) -> Any:
    """A field whose value must lie between lo and hi (each bound closed unless marked open)."""
    return field(default=default, metadata={"range": (lo, hi, lo_open, hi_open)})


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel settings; defaults are the 2021 baseline's (40 x 500 per 10 s clip)."""

    sample_rate: int = at_least(1, 44100)
    duration: float = at_least(
        0, 10.0, strict=True
    )  # seconds per clip; shorter clips are zero-padded, longer ones cropped
    n_fft: int = at_least(1, 2048)
    win_length: int = at_least(1, 1764)  # int(44100 * 0.04)
    hop_length: int = at_least(1, 882)  # int(44100 * 0.02)
    window: Literal["hamming", "hann"] = "hamming"  # periodic (scipy hamming(sym=False))
    center: bool = True
    pad_mode: Literal["reflect", "constant", "replicate", "circular"] = "reflect"
    power: float = at_least(0, 1.0, strict=True)  # 1 = magnitude (the baseline), 2 = power
    n_mels: int = at_least(1, 40)
    fmin: float = at_least(0, 0.0)
    fmax: float | None = 22050.0
    htk: bool = False
    mel_norm: Literal["slaney"] | None = "slaney"
    log_eps: float = at_least(0, 2.220446049250313e-16, strict=True)  # numpy.spacing(1)
    # Frames per clip: None = every frame a clip of `duration` gives, less the last `trim_frames` (the
    # baseline keeps 500 of 501 per 10 s: trim 1; the zoo's frontends keep all 431: trim 0), so that a
    # dataset of other clip lengths needs the duration alone; an int fixes the count.
    frames: int | None = at_least(1, None)
    trim_frames: int = at_least(0, 1)

    @property
    def clip_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def n_frames(self) -> int:
        """The frames of one clip as the model sees them (``frames``, or derived from the clip)."""
        if self.frames is not None:
            return self.frames
        every = (
            1 + self.clip_samples // self.hop_length
            if self.center
            else 1 + (self.clip_samples - self.n_fft) // self.hop_length
        )
        return max(every - self.trim_frames, 1)


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # TAU root, or the folder of a generic dataset's audio
    format: Literal["tau", "generic"] = "tau"  # "tau" or "generic"
    csv: str | None = None  # generic: filename<TAB>scene_label [fold] [device] [identifier]
    classes: tuple[str, ...] | None = None  # generic: class names in output order
    evaluate_folds: tuple[str, ...] | None = None  # generic: folds forming the evaluate split
    train_devices: tuple[str, ...] | None = None  # restrict training (and validation) to these devices
    # train on the files of ROOT/split_setup/split<subset>.csv only (DCASE 2024: 5, 10, 25, 50, 100;
    # `tinyasc subsets ROOT` writes them, or put the organisers' files there)
    subset: int | None = between(0, 100, None, lo_open=True)
    # The validation part of the training data, which selects the epoch (data/dataset.py):
    # "location" (DCASE: whole recording locations, city-balanced), "fold" (one predefined fold of a
    # generic dataset: validation_fold, default the last training fold), "fraction" (a seeded per-class
    # share of files), "none" (train on everything; the last selectable epoch is kept), or "auto":
    # location where clips have locations, fold where they have folds, else fraction.
    validation: Literal["auto", "location", "fold", "fraction", "none"] = "auto"
    validation_fold: str | None = None
    validation_fraction: float = between(0, 1, 0.3, lo_open=True, hi_open=True)
    validation_seed: int = 0
    # A split that leaves less than this share of the training data for training is refused (auto
    # falls back from location to fraction first), naming the numbers.
    min_train_share: float = between(0, 1, 0.5)
    cache_dir: str | None = None  # default: $TINYASC_CACHE or ~/.cache/tinyasc
    workers: int = at_least(1, 2)  # processes for decoding and the frontend when filling the cache


@dataclass(frozen=True)
class ModelConfig:
    name: str = "dcase2021_baseline"
    params: dict = field(default_factory=dict)
    # the widest version of the model (its widths scaled by one factor) that stores at most this many
    # bytes at the shipped precision for the dataset's class count, chosen before training
    fit_bytes: int | None = at_least(1, None)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = at_least(1, 200)
    batch_size: int = at_least(1, 16)
    lr: float = at_least(0, 1e-3, strict=True)  # peak learning rate
    optimizer: Literal["adam", "adamw", "sgd"] = (
        "adam"  # "adam" (Keras defaults: betas 0.9/0.999, eps 1e-7), "adamw" or "sgd"
    )
    weight_decay: float = at_least(0, 0.0)  # L2 for adam and sgd, decoupled for adamw
    momentum: float = between(0, 1, 0.9, hi_open=True)  # sgd only
    nesterov: bool = False  # sgd only
    schedule: Literal["constant", "cosine", "linear"] = (
        "constant"  # per-epoch learning rate: "constant", "cosine" or "linear" (decay to lr_min)
    )
    warmup_epochs: int = at_least(0, 0)  # linear warm-up from lr/warmup_epochs to lr over these epochs
    decay_start: int = at_least(
        0, 0
    )  # epoch after which cosine / linear decay begins (at least warmup_epochs; at or past epochs: none)
    lr_min: float = at_least(0, 0.0)  # learning rate at the last epoch for cosine / linear
    loss: Literal["ce", "focal"] = "ce"  # "ce" (cross-entropy) or "focal"
    label_smoothing: float = between(0, 1, 0.0, hi_open=True)
    focal_gamma: float = at_least(0, 2.0)
    kd_logits: str | None = (
        None  # teacher logits (a `tinyasc teachers` folder or its logits.npz); None = no KD
    )
    kd_weight: float = between(
        0, 1, 0.5
    )  # loss = (1 - w) * classification loss + w * T^2 * KL(teacher_T || student_T)
    kd_temperature: float = at_least(0, 2.0, strict=True)
    mean_teacher_weight: float = at_least(
        0, 0.0
    )  # consistency loss weight against an EMA of the student; 0 = off
    mean_teacher_decay: float = between(
        0, 1, 0.999, lo_open=True, hi_open=True
    )  # EMA decay per optimiser step
    # Model selection: the best validation epoch (select_metric) among the epochs after this one (1-based). The
    # official StasherCallback(initial_delay=50) compares Keras's 0-based epoch with 50, so its first
    # selectable epoch is the 52nd: select_after 51.
    select_after: int = at_least(0, 51)
    # what "best" means: "accuracy" (the official callback: highest validation accuracy, first epoch
    # on ties) or "logloss" (lowest validation log loss; finer-grained than accuracy on a small
    # validation part, where one clip moves accuracy by a whole step, and the metric DCASE ranks by)
    select_metric: Literal["accuracy", "logloss"] = "accuracy"
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"
    eval_batch_size: int = at_least(1, 64)
    threads: int | None = at_least(1, None)  # torch intra-op threads on CPU; None = the cores left
    # processes reading training batches ahead (data/loader.py): None = 0 on the CPU, up to 4 on CUDA
    # (pinned memory, non-blocking copies); on the CPU they are taken from the torch threads
    loader_workers: int | None = at_least(0, None)
    init_from: str | None = None  # a tinyasc model file (float32 or float16) to start from: fine-tuning
    sync_batchnorm: bool = True  # DDP on CUDA: batch-norm statistics over the global batch
    # arithmetic of the training forward pass (autocast): "float32"; "bfloat16" (CPU with native bf16
    # or CUDA); "float16" (CUDA only, with a gradient scaler); "auto" = bfloat16 on CUDA, and on a CPU
    # that computes it natively (AVX512-BF16, AMX) for the families measured faster with it
    # (models.layers.ASCModel.bfloat16_training), else float32. Weights, optimiser and evaluation
    # stay float32. The default was checked not to cost accuracy (README, engine section).
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # the training forward through torch.compile (validation, checkpoints and the shipped model use
    # the plain model: same parameter names). The first steps pay the compilation (tens of seconds
    # to minutes); on the CPU it needs a C++ compiler. benchmarks/train_speed.py measures it.
    compile: bool = False
    # experiment trackers mirroring metrics.jsonl (the [tracking] extra); metrics.jsonl stays the truth
    trackers: tuple[Literal["tensorboard", "mlflow"], ...] = ()


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation of normalised log-mel batches; every default is off."""

    specaugment_freq_masks: int = at_least(0, 0)  # SpecAugment: number of frequency masks per clip
    specaugment_freq_width: int = at_least(0, 8)  # ... each up to this many mel bins
    specaugment_time_masks: int = at_least(0, 0)  # number of time masks per clip
    specaugment_time_width: int = at_least(0, 20)  # ... each up to this many frames
    mixstyle_p: float = between(0, 1, 0.0)  # Freq-MixStyle: probability per batch (CP-JKU: 0.4 to 0.6)
    mixstyle_alpha: float = at_least(0, 0.3)  # Beta(alpha, alpha) mixing weights
    freq_shift: int = at_least(0, 0)  # random shift along frequency of up to this many bins
    mixup_alpha: float = at_least(0, 0.0)  # mixup with Beta(alpha, alpha) per clip (CP-JKU: 0.3); 0 = off
    device_translation_p: float = between(
        0, 1, 0.0
    )  # device-A clips get another device's learned spectral transfer
    # waveform side (any of these on: training reads waveforms and computes log-mel per batch)
    roll_max_seconds: float = at_least(0, 0.0)  # circular time roll of up to this much either way
    gain_db: float = at_least(0, 0.0)  # random gain, uniform within +-gain_db decibels
    dir_p: float = between(0, 1, 0.0)  # device impulse responses: probability per device-A clip (CP-JKU: 0.6)
    dir_path: str | None = None  # folder of IR audio files; None = the procedural set
    dir_count: int = at_least(1, 32)  # procedural IRs
    dir_seed: int = 0

    @property
    def waveform(self) -> bool:
        return self.roll_max_seconds > 0 or self.gain_db > 0 or self.dir_p > 0


@dataclass(frozen=True)
class PruneConfig:
    """Magnitude pruning during training (compress/prune.py); target 0 = off."""

    target: float = between(0, 1, 0.0, hi_open=True)  # final fraction of zero conv/linear weights
    scope: Literal["global", "layer"] = (
        "global"  # "global" (one threshold) or "layer" (each layer to the target)
    )
    start_epoch: int = at_least(1, 1)  # first epoch with a non-zero sparsity
    ramp_epochs: int = at_least(0, 10)  # epochs from the start to the target
    schedule: Literal["linear", "exponential"] = "linear"  # "linear" or "exponential"
    exclude: tuple[str, ...] = ()  # layer names left dense (e.g. the first conv)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    # storage of the shipped model: "float32", "float16" (post-training cast, batch norm float32),
    # "float16-all" (batch norm float16 too, as the 2024/2025 baselines), "int8" (post-training static
    # quantisation calibrated on training clips), "int8-qat" (quantisation-aware training, then int8) or
    # "binary" (packed 1-bit weights of a model.params={binary: true} model); see tinyasc/storage.py
    quantize: Quantize = "float16"
    calibration_clips: int = at_least(1, 512)  # training clips for the int8 activation ranges
    # the edition whose complexity rules the run is checked against (tinyasc/rules.py): the verdict is
    # said before training and written to size.json; dcase2021 counts non-zero bytes only
    rules: RuleName = "dcase2021"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())


def with_absolute_paths(cfg: Config) -> Config:
    """The config with its file and folder keys made absolute, so that a run directory's config.yaml
    means the same files from any working directory (evaluate, compress and export read it later)."""

    def absolute(p: str | None) -> str | None:
        return str(Path(p).expanduser().resolve()) if p else p

    d, t, a = cfg.data, cfg.train, cfg.augment
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(
            d, root=absolute(d.root), csv=absolute(d.csv), cache_dir=absolute(d.cache_dir)
        ),
        train=dataclasses.replace(t, kd_logits=absolute(t.kd_logits), init_from=absolute(t.init_from)),
        augment=dataclasses.replace(a, dir_path=absolute(a.dir_path)),
    )


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (sorted keys)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _build(cls: type, values: dict, where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key {where}{key!r}; expected one of {', '.join(known)}")
        f = known[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {where}{key}: expected a mapping, got {value!r}")
            kwargs[key] = _build(type(default), value, f"{where}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{where}{key}")
            _check_range(kwargs[key], f, f"{where}{key}")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """``value`` as the annotated type ``hint`` of config key ``key``, or a ConfigError naming the key."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # X | None: the config's only unions
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is Literal:
        if value not in args:
            choices = ", ".join("null" if a is None else repr(a) for a in args)
            raise ConfigError(f"config key {key}: {value!r}; expected one of {choices}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    if hint is str and isinstance(value, str):
        return value
    if hint is str and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # YAML reads a fold name such as 2 as a number
    if hint is dict and isinstance(value, dict):
        return value
    if origin is tuple and isinstance(value, list | tuple):
        item = args[0] if args else None
        if typing.get_origin(item) is Literal:
            for v in value:
                if v not in typing.get_args(item):
                    choices = ", ".join(repr(c) for c in typing.get_args(item))
                    raise ConfigError(f"config key {key}: {v!r}; expected a list of {choices}")
            return tuple(value)
        out = []
        for v in value:  # a list of names: strings, or numbers read as their text (folds 1-5)
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConfigError(f"config key {key}: {v!r} in the list; expected names")
            out.append(str(v))
        return tuple(out)
    expected = "list" if origin is tuple else getattr(hint, "__name__", str(hint))
    raise ConfigError(f"config key {key}: expected {expected}, got {value!r}")


def _check_range(value: Any, f: dataclasses.Field, key: str) -> None:
    if value is None or "range" not in f.metadata:
        return
    lo, hi, lo_open, hi_open = f.metadata["range"]
    if value < lo or (lo_open and value == lo) or value > hi or (hi_open and value == hi):
        if hi == math.inf:
            want = f"> {lo:g}" if lo_open else f">= {lo:g}"
        else:
            want = f"a value in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"config key {key}={value!r}: expected {want}")


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _cross_checks(cfg: Config) -> None:
    """The rules that join several keys."""
    fe, t, a, p = cfg.frontend, cfg.train, cfg.augment, cfg.prune
    if fe.win_length > fe.n_fft:
        raise ConfigError(f"frontend.win_length={fe.win_length}: must not exceed frontend.n_fft={fe.n_fft}")
    if fe.fmax is not None and fe.fmax <= fe.fmin:
        raise ConfigError(f"frontend.fmax={fe.fmax}: expected above frontend.fmin={fe.fmin}")
    if cfg.data.classes is not None and len(set(cfg.data.classes)) != len(cfg.data.classes):
        dup = sorted({c for c in cfg.data.classes if cfg.data.classes.count(c) > 1})
        raise ConfigError(f"config key data.classes: {', '.join(map(str, dup))} given more than once")
    if not _DEVICE.fullmatch(t.device):
        raise ConfigError(
            f"config key train.device: {t.device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        )
    if t.lr_min > t.lr:
        raise ConfigError(f"train.lr_min={t.lr_min}: must not exceed train.lr={t.lr}")
    if a.mixstyle_p > 0 and a.mixstyle_alpha <= 0:
        raise ConfigError("augment.mixstyle_alpha must be > 0 when augment.mixstyle_p > 0")
    if p.target > 0:
        reached = p.start_epoch + max(p.ramp_epochs, 1) - 1
        if reached > t.epochs:
            raise ConfigError(
                f"prune: the ramp from epoch {p.start_epoch} over {p.ramp_epochs} epochs reaches the target at "
                f"epoch {reached}, after the last epoch {t.epochs}; shorten prune.ramp_epochs or train longer"
            )
    binary = bool(cfg.model.params.get("binary", False))
    if cfg.model.fit_bytes is not None and binary:
        raise ConfigError(
            "model.fit_bytes: widths are fitted for float16, float32 and int8 storage, not 1-bit"
        )
    if cfg.quantize == "binary" and not binary:
        raise ConfigError("quantize=binary needs a 1-bit model: set model.params={binary: true}")
    if binary and cfg.quantize in ("int8", "int8-qat"):
        raise ConfigError(
            f"quantize={cfg.quantize} and a 1-bit model (model.params.binary) conflict; pick one"
        )


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigError(f"override {dotted!r}: an empty part in the dotted key")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict:
    """``["train.epochs=5", "model.params={width: 8}"]`` -> nested dict; values parsed as YAML."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.epochs=5")
        key, raw = item.split("=", 1)
        if not key.strip():
            raise ConfigError(
                f"override {item!r}: no key before '='; expected key=value, e.g. train.epochs=5"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"override {key.strip()}: {raw!r} is not a YAML value ({problem})") from None
        _set_dotted(tree, key.strip(), value)
    return tree


def merge_config(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(values: dict) -> Config:
    """A checked Config from a nested mapping (a YAML diff against the defaults)."""
    if not isinstance(values, dict):
        raise ConfigError(f"a config is a mapping of sections; got {type(values).__name__}")
    cfg = _build(Config, values, "")
    _cross_checks(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (a diff against them), then ``key=value`` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: a folder, not a config file") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = loaded
    values = merge_config(values, parse_overrides(overrides or []))
    return config_from_dict(values)


def save_config(cfg: Config, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False))


def flatten(tree: dict, keep: tuple[str, ...] = (), prefix: str = "") -> dict:
    """``{"a.b": value}`` of a nested mapping; sections named in ``keep`` (and empty ones) stay values."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v and k not in keep:
            out.update(flatten(v, keep, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def plain(obj: Any) -> Any:
    """Tuples to lists, recursively: what YAML and torch's weights_only loader accept."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj
