"""``tinyasc export RUN --format onnx [--float16 | --int8]``: a deployable ONNX model and its contract.

The ONNX graph takes the **log-mel features** of a clip and includes everything after them: the band
normalisation of the training fold, the network, the calibration temperature of the run (1 when not
calibrated) and the softmax. The frontend is not in the graph (an STFT of 441,000 samples is better done
by the platform's DSP library); its exact definition is written beside the model as the feature
contract ``MODEL.onnx.json``: frontend parameters, classes, input and output names and shapes, and the
recipe in words. ``tinyasc predict MODEL.onnx ...`` runs the contract's frontend and onnxruntime on any
audio.

- ``float32``: the trained float weights (``model.pt``; a pruned run keeps its zeros).
- ``float16``: weights and arithmetic in float16 (input and output stay float32).
- ``int8`` of a run that ships int8 (``compress --method int8-ptq / int8-qat``, ``quantize: int8``):
  the run's own int8 model (``compress/int8.py``: its integers, computed in float32 as in PyTorch),
  exactly the model its evaluation scored and its size report counted.
- ``int8`` of a float run: onnxruntime's static quantisation of the float32 graph (QDQ format,
  per-channel int8 weights, uint8 activations calibrated with min-max on the run's training clips),
  run by onnxruntime's int8 CPU kernels. Its quantisation is onnxruntime's, not tinyasc's.

Every export is checked before it is kept: onnxruntime runs the run's fold1_evaluate clips (real-length
log-mel features) and its probabilities are compared with the PyTorch model of the same precision
(float32: the float model; float16: the model in half precision; the run's own int8: that int8 model;
onnxruntime's int8: the float model, since the two int8 implementations round differently). The
largest absolute probability difference and the share of identical decisions are stored in the
contract. The export fails unless every probability is within ``TOLERANCE`` (float32 1e-4, float16
1e-2, the run's own int8 1e-3, onnxruntime's int8 5e-2) and every clip whose decision is clear (top-2
margin above twice the tolerance) gets the same decision.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc import artifact
from tinyasc.config import ConfigError, FrontendConfig
from tinyasc.data.dataset import prepare_splits
from tinyasc.frontend import Normalizer
from tinyasc.io import atomic_write_bytes, atomic_write_json
from tinyasc.rundir import RunDir
from tinyasc.storage import EXPORT_PRECISIONS

PRECISIONS = tuple(str(p) for p in EXPORT_PRECISIONS)
# Largest absolute difference of a class probability, onnxruntime against PyTorch, per precision.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "int8": 5e-2}
# The run's own int8 model in both runtimes: the same integers, but a layer input within float32
# rounding of a grid step's edge may round the other way after the runtimes' differently ordered sums.
OWN_INT8_TOLERANCE = 1e-3
INPUT = "logmel"
OUTPUTS = ("logits", "probabilities")


class ExportError(ValueError):
    pass


class Deployable(nn.Module):
    """log-mel (B, 1, n_mels, frames) -> (logits, probabilities): normalisation, network, temperature."""

    def __init__(self, norm: nn.Module, net: nn.Module, temperature: float = 1.0, half: bool = False):
        super().__init__()
        self.norm, self.net, self.half_precision = norm, net, half
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature))

    def forward(self, x: torch.Tensor):
        z = self.norm(x)
        if self.half_precision:
            z = z.half()
        logits = self.net(z).float()
        return logits, torch.softmax(logits * self.inv_temperature, dim=1)


def load_float_run(run: str | Path) -> tuple[dict, nn.Module, Normalizer]:
    """The artifact, float model and normaliser of a run's (or a model file's) float weights."""
    path = Path(run)
    if path.is_dir():
        r = RunDir(path)
        path = r.float_model_path if r.float_model_path.exists() else r.shipped_model_path
    art = artifact.load(path)
    if artifact.storage_of(art) == "ensemble":  # members averaged: normalised inside
        return art, artifact.load_stored(art), nn.Identity()
    art = artifact.check_float(art, path, "export", "--int8 exports an int8 ONNX model")
    if art["model_params"].get("binary"):
        raise ExportError(f"{path}: a 1-bit model; ONNX has no packed 1-bit weights (export its float run)")
    model = artifact.load_stored(art)
    return art, model, artifact.normalizer_of(art)


def own_int8_model(run: Path) -> tuple[dict, nn.Module, Normalizer] | None:
    """The artifact, int8 model and normaliser of a run that ships tinyasc int8; None for any other run."""
    path = RunDir(run).shipped_model_path
    if not path.exists():
        return None
    art = artifact.load(path)
    if artifact.storage_of(art) != "int8":
        return None
    return art, artifact.load_stored(art), artifact.normalizer_of(art)


def export_module(module: nn.Module, example: torch.Tensor, path: Path, fold_constants: bool = True) -> None:
    """``module`` (log-mel in; logits and probabilities out) as an ONNX file, batch dynamic.

    ``fold_constants=False`` keeps the graph as traced: an int8 model's weights stay int8 in the file
    (folded, its dequantised weights would be stored float32; onnxruntime folds them in memory)."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notes: not needed for these models
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                input_names=[INPUT],
                output_names=list(OUTPUTS),
                dynamic_shapes=({0: batch},),
                dynamo=True,
                optimize=fold_constants,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    program.save(str(path))


def layout_transforms(model: nn.Module) -> bool:
    """Whether onnxruntime runs ``model``'s export with its NCHWc layout transforms (the family's
    ``onnx_layout_transforms``; onnxruntime's default for any other module)."""
    return bool(getattr(model, "onnx_layout_transforms", True))


def onnx_session(path: Path, threads: int | None = None, layout_transforms: bool = True):
    """An onnxruntime CPU session; ``layout_transforms=False`` runs onnxruntime's extended level (every
    fusion but the NCHWc layout transforms), faster for the families that declare it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if not layout_transforms:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class _Reader:
    """onnxruntime CalibrationDataReader over raw log-mel batches."""

    def __init__(self, batches: list[np.ndarray]):
        self.items = iter([{INPUT: b} for b in batches])

    def get_next(self):
        return next(self.items, None)


def quantize_onnx(float_path: Path, out_path: Path, calibration: list[np.ndarray]) -> None:
    """Static QDQ int8 quantisation (per-channel weights, min-max calibration) of a float32 ONNX file."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out_path),
            _Reader(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )


def _features(splits, split: str, n: int, seed: int = 0) -> np.ndarray:
    """Raw log-mel (n, 1, M, T) float32 of up to ``n`` clips of the run's training or evaluate split."""
    clips = splits.train if split == "train" else splits.evaluate
    rows = splits.rows(clips)
    if split == "train":
        rows = np.sort(np.random.default_rng(seed).permutation(rows)[:n])
    else:
        rows = rows[:n]
    if len(rows) == 0:
        raise ExportError(f"{splits.index.root}: no {split} clips to check or calibrate the export with")
    return np.asarray(splits.features[np.sort(rows)], dtype=np.float32)[:, None]


def compare(reference: np.ndarray, probs: np.ndarray, tolerance: float) -> dict:
    """Largest probability difference, share of identical decisions overall, and among the clips whose
    reference decision is clear (top-2 margin above twice the tolerance, so that no difference within
    the tolerance could flip it)."""
    top2 = np.sort(reference, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    same = reference.argmax(1) == probs.argmax(1)
    return {
        "clips": len(probs),
        "tolerance": tolerance,
        "max_abs_probability_difference": float(np.abs(reference - probs).max()),
        "same_decisions": float(same.mean()),
        "clear_clips": int(clear.sum()),
        "same_decisions_clear": float(same[clear].mean()) if clear.any() else 1.0,
    }


def onnx_bytes(
    model: nn.Module,
    norm: nn.Module,
    temperature: float,
    precision: str,
    test: np.ndarray,
    calibration: np.ndarray | None = None,
    tmp_dir: Path | None = None,
    own_int8: bool = False,
) -> tuple[bytes, dict]:
    """The ONNX file of ``Deployable(norm, model, temperature)`` at ``precision`` and its check.

    ``test``: raw log-mel (N, 1, n_mels, frames) that onnxruntime and PyTorch both run; ``calibration``:
    the same for onnxruntime's int8 activation ranges; ``own_int8``: ``model`` is a tinyasc int8 model,
    exported as it computes. Raises ``ExportError`` when they disagree beyond ``TOLERANCE`` or on a
    clear decision.
    """
    half = precision == "float16"
    float_deploy = Deployable(norm, model, temperature).eval()
    deploy = (
        Deployable(norm, copy.deepcopy(model).half(), temperature, half=True).eval() if half else float_deploy
    )
    example = torch.zeros(2, *test.shape[1:])
    with torch.no_grad():
        reference = np.concatenate(
            [deploy(torch.from_numpy(test[i : i + 32]))[1].double().numpy() for i in range(0, len(test), 32)]
        )
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        tmp = Path(tmp)
        onnx_path = tmp / "model.onnx"
        if precision == "int8" and not own_int8:
            if calibration is None:
                raise ExportError("int8 export needs calibration clips")
            export_module(float_deploy, example, tmp / "float.onnx")
            batches16 = [calibration[i : i + 16] for i in range(0, len(calibration), 16)]
            quantize_onnx(tmp / "float.onnx", onnx_path, batches16)
        else:
            export_module(deploy, example, onnx_path, fold_constants=not own_int8)
        session = onnx_session(onnx_path, layout_transforms=layout_transforms(model))
        probs = np.concatenate(
            [session.run([OUTPUTS[1]], {INPUT: test[i : i + 32]})[0] for i in range(0, len(test), 32)]
        ).astype(np.float64)
        data = onnx_path.read_bytes()
    tol = OWN_INT8_TOLERANCE if own_int8 else TOLERANCE[precision]
    check = compare(reference, probs, tol)
    check["reference"] = "PyTorch float16" if half else "PyTorch int8" if own_int8 else "PyTorch float32"
    if check["max_abs_probability_difference"] > tol or check["same_decisions_clear"] < 1:
        raise ExportError(
            f"onnxruntime disagrees with {check['reference']}: max probability difference "
            f"{check['max_abs_probability_difference']:.2e} (tolerance {tol}), same decisions on "
            f"{100 * check['same_decisions_clear']:.1f}% of the {check['clear_clips']} clear clips"
        )
    return data, check


def export_onnx(
    run: str | Path,
    out: str | Path,
    precision: str = "float32",
    check_clips: int = 256,
    calibration_clips: int = 256,
) -> dict:
    """Export ``run`` to ``out`` (.onnx) plus ``out.json``; returns the contract (with the check)."""
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    out = Path(out)
    if out.suffix != ".onnx":
        raise ExportError(f"{out}: the output file must end in .onnx")
    run = Path(run)
    if not run.is_dir():
        raise ExportError(f"{run}: not a run directory")
    cfg = RunDir(run).config()
    own = own_int8_model(run) if precision == "int8" else None
    art, model, norm = own if own is not None else load_float_run(run)
    temperature = RunDir(run).temperature
    fe = FrontendConfig(**art["frontend"])
    splits = prepare_splits(cfg.data, cfg.frontend)
    test = _features(splits, "evaluate", check_clips)
    ort_int8 = precision == "int8" and own is None
    calib = _features(splits, "train", calibration_clips, cfg.train.seed) if ort_int8 else None
    out.parent.mkdir(parents=True, exist_ok=True)
    data, check = onnx_bytes(
        model, norm, temperature, precision, test, calib, tmp_dir=out.parent, own_int8=own is not None
    )
    atomic_write_bytes(out, data)
    contract = {
        "format": "tinyasc-onnx-1",
        "model": out.name,
        "source_run": str(run.resolve()),
        "model_name": art["model_name"],
        "precision": precision,
        **(
            {"int8": "onnxruntime static (QDQ)" if ort_int8 else art["int8"]["scheme"]}
            if precision == "int8"
            else {}
        ),
        "bytes_on_disk": len(data),
        "classes": list(art["classes"]),
        "frontend": asdict(fe),
        "input": {"name": INPUT, "shape": ["batch", 1, fe.n_mels, fe.n_frames], "dtype": "float32"},
        "outputs": {
            OUTPUTS[0]: {"shape": ["batch", len(art["classes"])]},
            OUTPUTS[1]: {"shape": ["batch", len(art["classes"])], "temperature": temperature},
        },
        "features": feature_contract(fe),
        "check": check,
        "layout_transforms": layout_transforms(model),
    }
    atomic_write_json(Path(str(out) + ".json"), contract)
    return contract


def feature_contract(fe: FrontendConfig) -> str:
    centre = f"centred with {fe.pad_mode} padding" if fe.center else "not centred"
    return (
        f"mono audio at {fe.sample_rate} Hz, {fe.duration} s ({fe.clip_samples} samples; zero-padded or "
        f"cropped); STFT with n_fft {fe.n_fft}, a periodic {fe.window} window of {fe.win_length} samples, "
        f"hop {fe.hop_length}, {centre}; magnitude to the power {fe.power}; mel filterbank of {fe.n_mels} "
        f"bands from {fe.fmin} to {fe.fmax or fe.sample_rate / 2} Hz (librosa.filters.mel with htk={fe.htk}, "
        f"norm={fe.mel_norm!r}); natural log of (mel + {fe.log_eps!r}); the first {fe.n_frames} frames. "
        "tinyasc.frontend.LogMel implements it; the band normalisation is inside the ONNX graph."
    )


class OnnxNet(nn.Module):
    """An exported ONNX model behind the nn.Module interface ``tinyasc predict`` drives (raw log-mel in)."""

    def __init__(self, onnx_model: OnnxModel):
        super().__init__()
        self.onnx = onnx_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.onnx.logits(x)


class OnnxModel:
    """An exported model: the contract's frontend settings and an onnxruntime session."""

    def __init__(self, path: str | Path, threads: int | None = None):
        path = Path(path)
        meta_path = Path(str(path) + ".json")
        if not meta_path.exists():
            raise ExportError(f"{path}: no feature contract {meta_path.name} beside it")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise ExportError(f"{meta_path}: not valid JSON ({e})") from None
        if meta.get("format") != "tinyasc-onnx-1":
            raise ExportError(f"{meta_path}: not a tinyasc ONNX contract (format {meta.get('format')!r})")
        self.path, self.meta = path, meta
        self.classes = tuple(meta["classes"])
        self.frontend = FrontendConfig(**meta["frontend"])
        # the family's choice, written by the export (a contract without it: onnxruntime's default)
        self.session = onnx_session(path, threads, meta.get("layout_transforms", True))

    def logits(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, 1, n_mels, frames) raw log-mel -> (B, C) logits (before the temperature)."""
        x = logmel.detach().cpu().numpy().astype(np.float32, copy=False)
        return torch.from_numpy(self.session.run([OUTPUTS[0]], {INPUT: x})[0])

    def probabilities(self, logmel: np.ndarray) -> np.ndarray:
        """(B, n_mels, frames) or (B, 1, n_mels, frames) raw log-mel -> (B, C) probabilities."""
        x = np.asarray(logmel, dtype=np.float32)
        if x.ndim == 3:
            x = x[:, None]
        return self.session.run([OUTPUTS[1]], {INPUT: x})[0].astype(np.float64)


def check_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'tinyasc[export]'") from None


_C_TYPES = {
    torch.int8: ("int8_t", "int8"),
    torch.uint8: ("uint8_t", "uint8"),
    torch.int16: ("int16_t", "int16"),
    torch.int32: ("int32_t", "int32"),
    torch.float32: ("float", "float32"),
    torch.float16: ("uint16_t", "float16 (IEEE 754 half-precision bits)"),
}


def _c_name(key: str) -> str:
    return "w_" + "".join(ch if ch.isalnum() else "_" for ch in key)


def export_c(run: str | Path, out: str | Path) -> dict:
    """The shipped model's stored tensors as C arrays (``out``, a header) for firmware, exactly the bytes
    of the model file, with the feature contract and classes in its leading comment and in ``out.json``.

    No C inference code is written: the header carries the weights an embedded runtime (CMSIS-NN,
    TFLite Micro's reference kernels, a hand-written network) loads, in the layer order of the model."""
    out = Path(out)
    if out.suffix != ".h":
        raise ExportError(f"{out}: the output file must end in .h")
    path = RunDir(run).shipped_model_path if Path(run).is_dir() else Path(run)
    art = artifact.load(path)
    if artifact.storage_of(art) == "ensemble":
        raise ExportError(f"{path}: an ensemble; export its members one by one")
    fe = FrontendConfig(**art["frontend"])
    lines = [
        f"/* tinyasc model {art['model_name']} ({art['storage']}) from {path.name}.",
        f" * classes, in output order: {', '.join(art['classes'])}",
        f" * input: log-mel (1, {fe.n_mels}, {fe.n_frames}); {feature_contract(fe)}",
        " * Band normalisation: (x - norm_mean[band]) / norm_std[band], arrays below. */",
        "#include <stdint.h>",
        "",
    ]
    tensors = {"norm_mean": art["norm_mean"], "norm_std": art["norm_std"], **art["state"]}
    arrays = []
    for key, t in tensors.items():
        if key.endswith("num_batches_tracked"):  # a training counter, not a parameter (nor counted by DCASE)
            continue
        if t.dtype not in _C_TYPES:
            raise ExportError(f"{path}: tensor {key} of dtype {t.dtype} has no C form here")
        ctype, what = _C_TYPES[t.dtype]
        flat = t.detach().contiguous().reshape(-1)
        values = (
            flat.view(torch.int16).numpy().astype(np.uint16) if t.dtype == torch.float16 else flat.numpy()
        )
        body = ", ".join(repr(float(v)) + "f" if ctype == "float" else str(int(v)) for v in values)
        name = _c_name(key)
        lines.append(f"/* {key}: shape {list(t.shape)}, {what} */")
        lines.append(f"static const {ctype} {name}[{max(flat.numel(), 1)}] = {{{body or '0'}}};")
        arrays.append(
            {
                "tensor": key,
                "c_name": name,
                "shape": list(t.shape),
                "type": what,
                "bytes": flat.numel() * t.element_size(),
            }
        )
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(out, text.encode())
    record = {
        "format": "tinyasc-c-1",
        "header": out.name,
        "model_name": art["model_name"],
        "storage": art["storage"],
        "classes": list(art["classes"]),
        "frontend": asdict(fe),
        "features": feature_contract(fe),
        "arrays": arrays,
        "bytes": sum(a["bytes"] for a in arrays),
    }
    atomic_write_json(Path(str(out) + ".json"), record)
    return record
