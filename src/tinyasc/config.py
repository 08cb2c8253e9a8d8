"""Experiment configuration: frozen dataclasses, YAML files as diffs against the defaults, dotted overrides.

Defaults reproduce the DCASE 2021 Task 1A baseline (reference sections 1.1-1.3).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value that does not fit the schema; names the key and what was expected."""


@dataclass(frozen=True)
class FrontendConfig:
    """Log-mel settings; defaults are the 2021 baseline's (40 x 500 per 10 s clip)."""

    sample_rate: int = 44100
    duration: float = 10.0  # seconds per clip; shorter clips are zero-padded, longer ones cropped
    n_fft: int = 2048
    win_length: int = 1764  # int(44100 * 0.04)
    hop_length: int = 882  # int(44100 * 0.02)
    window: str = "hamming"  # periodic (scipy hamming(sym=False))
    center: bool = True
    pad_mode: str = "reflect"
    power: float = 1.0  # 1 = magnitude (the baseline), 2 = power
    n_mels: int = 40
    fmin: float = 0.0
    fmax: float | None = 22050.0
    htk: bool = False
    mel_norm: str | None = "slaney"
    log_eps: float = 2.220446049250313e-16  # numpy.spacing(1)
    frames: int | None = 500  # the baseline keeps the first 500 of 501 frames

    @property
    def clip_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # TAU root, or the folder of a generic dataset's audio
    format: str = "tau"  # "tau" or "generic"
    csv: str | None = None  # generic: filename<TAB>scene_label [fold] [device] [identifier]
    classes: tuple[str, ...] | None = None  # generic: class names in output order
    evaluate_folds: tuple[str, ...] | None = None  # generic: folds forming the evaluate split
    train_devices: tuple[str, ...] | None = None  # restrict training (and validation) to these devices
    validation_fraction: float = 0.3
    validation_seed: int = 0
    cache_dir: str | None = None  # default: $TINYASC_CACHE or ~/.cache/tinyasc
    workers: int = 2  # processes for decoding and the frontend when filling the cache


@dataclass(frozen=True)
class ModelConfig:
    name: str = "dcase2021_baseline"
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 16
    lr: float = 1e-3  # peak learning rate
    optimizer: str = "adam"  # "adam" (Keras defaults: betas 0.9/0.999, eps 1e-7), "adamw" or "sgd"
    weight_decay: float = 0.0  # L2 for adam and sgd, decoupled for adamw
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    schedule: str = "constant"  # per-epoch learning rate: "constant", "cosine" or "linear" (decay to lr_min)
    warmup_epochs: int = 0  # linear warm-up from lr/warmup_epochs to lr over these epochs
    decay_start: int = 0  # epoch after which cosine / linear decay begins (at least warmup_epochs)
    lr_min: float = 0.0  # learning rate at the last epoch for cosine / linear
    loss: str = "ce"  # "ce" (cross-entropy) or "focal"
    label_smoothing: float = 0.0
    focal_gamma: float = 2.0
    kd_logits: str | None = (
        None  # teacher logits (a `tinyasc teachers` folder or its logits.npz); None = no KD
    )
    kd_weight: float = 0.5  # loss = (1 - w) * classification loss + w * T^2 * KL(teacher_T || student_T)
    kd_temperature: float = 2.0
    mean_teacher_weight: float = 0.0  # consistency loss weight against an EMA of the student; 0 = off
    mean_teacher_decay: float = 0.999  # EMA decay per optimiser step
    select_after: int = 50  # StasherCallback initial_delay: best val accuracy after this epoch
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda"
    eval_batch_size: int = 64
    threads: int | None = None  # torch intra-op threads on CPU; None = torch's default
    init_from: str | None = None  # a tinyasc model file (float32 or float16) to start from: fine-tuning
    sync_batchnorm: bool = True  # DDP on CUDA: batch-norm statistics over the global batch


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentation of normalised log-mel batches; every default is off."""

    specaugment_freq_masks: int = 0  # SpecAugment: number of frequency masks per clip
    specaugment_freq_width: int = 8  # ... each up to this many mel bins
    specaugment_time_masks: int = 0  # number of time masks per clip
    specaugment_time_width: int = 20  # ... each up to this many frames
    mixstyle_p: float = 0.0  # Freq-MixStyle: probability per batch (CP-JKU: 0.4 to 0.6)
    mixstyle_alpha: float = 0.3  # Beta(alpha, alpha) mixing weights
    freq_shift: int = 0  # random shift along frequency of up to this many bins
    mixup_alpha: float = 0.0  # mixup with Beta(alpha, alpha) per clip (CP-JKU: 0.3); 0 = off
    device_translation_p: float = 0.0  # device-A clips get another device's learned spectral transfer
    # waveform side (any of these on: training reads waveforms and computes log-mel per batch)
    roll_max_seconds: float = 0.0  # circular time roll of up to this much either way
    gain_db: float = 0.0  # random gain, uniform within +-gain_db decibels
    dir_p: float = 0.0  # device impulse responses: probability per device-A clip (CP-JKU: 0.6)
    dir_path: str | None = None  # folder of IR audio files; None = the procedural set
    dir_count: int = 32  # procedural IRs
    dir_seed: int = 0

    @property
    def waveform(self) -> bool:
        return self.roll_max_seconds > 0 or self.gain_db > 0 or self.dir_p > 0


@dataclass(frozen=True)
class PruneConfig:
    """Magnitude pruning during training (compress/prune.py); target 0 = off."""

    target: float = 0.0  # final fraction of zero conv/linear weights
    scope: str = "global"  # "global" (one threshold) or "layer" (each layer to the target)
    start_epoch: int = 1  # first epoch with a non-zero sparsity
    ramp_epochs: int = 10  # epochs from the start to the target
    schedule: str = "linear"  # "linear" or "exponential"
    exclude: tuple[str, ...] = ()  # layer names left dense (e.g. the first conv)


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    # storage of the shipped model: "float32", "float16" (post-training cast), "int8" (post-training static
    # quantisation calibrated on training clips), "int8-qat" (quantisation-aware training, then int8) or
    # "binary" (packed 1-bit weights of a model.params={binary: true} model); see compress/ship.py
    quantize: str = "float16"
    calibration_clips: int = 512  # training clips for the int8 activation ranges

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        return config_hash(self.to_dict())


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (sorted keys)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _build(cls: type, values: dict, where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
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
            kwargs[key] = _coerce(value, default, f"{where}{key}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, key: str) -> Any:
    if value is None or default is None:
        return tuple(value) if isinstance(value, list) else value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(value, bool) and isinstance(value, int):
        return value
    if isinstance(default, float) and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    if isinstance(default, dict) and isinstance(value, dict):
        return value
    if isinstance(default, tuple) and isinstance(value, list | tuple):
        return tuple(value)
    raise ConfigError(f"config key {key}: expected {type(default).__name__}, got {value!r}")


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
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
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return tree


def merge_config(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(values: dict) -> Config:
    return _build(Config, values, "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (a diff against them), then ``key=value`` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = loaded
    values = merge_config(values, parse_overrides(overrides or []))
    return config_from_dict(values)


def save_config(cfg: Config, path: Path) -> None:
    from tinyasc.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False))


def plain(obj: Any) -> Any:
    """Tuples to lists, recursively: what YAML and torch's weights_only loader accept."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj
