"""A run's float model as an int8 TFLite (LiteRT) flatbuffer for microcontrollers, and its parity.

    pip install ai-edge-torch        # litert_torch and the LiteRT interpreter; not a tinyasc dependency
    python benchmarks/tflite_int8.py RUN --out model_int8.tflite [--calibration-clips 128]

Exports the normalisation and network of ``RUN/model.pt`` with ``torch.export``, quantises it with the
PT2E flow of ``litert_torch`` (per-channel symmetric int8 weights, static int8 activations calibrated
on training clips, one clip at a time: the exported graph is for batch 1), converts it to a TFLite
flatbuffer, runs it in the LiteRT interpreter on every clip of the run's evaluate split, and prints
the file size, the agreement with the float32 PyTorch model and with the PT2E int8 PyTorch model
(largest probability difference, share of identical decisions) and the class-wise accuracy of all three.
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np
import torch

from tinyasc import artifact
from tinyasc.data.dataset import prepare_splits
from tinyasc.rundir import RunDir


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--out", default="model_int8.tflite")
    p.add_argument("--calibration-clips", type=int, default=128)
    a = p.parse_args()
    warnings.simplefilter("ignore")
    import litert_torch
    from ai_edge_litert.interpreter import Interpreter
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    run = RunDir(a.run)
    art = artifact.load(run.float_model_path)
    net = torch.nn.Sequential(artifact.normalizer_of(art), artifact.load_stored(art)).eval()
    cfg = run.config()
    splits = prepare_splits(cfg.data, cfg.frontend)
    calib = np.asarray(splits.features[np.sort(splits.rows(splits.train))[: a.calibration_clips]], np.float32)
    test = np.asarray(splits.features[splits.rows(splits.evaluate)], np.float32)[:, None]
    y = splits.labels(splits.evaluate)
    sample = (torch.from_numpy(calib[:1, None]),)
    quantizer = PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    )
    qnet = prepare_pt2e(torch.export.export(net, sample).module(), quantizer)
    for clip in calib:
        qnet(torch.from_numpy(clip[None, None]))
    qnet = convert_pt2e(qnet, fold_quantize=False)
    litert_torch.convert(qnet, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(a.out)

    it = Interpreter(model_path=a.out)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]

    def tflite(x: np.ndarray) -> np.ndarray:
        it.set_tensor(inp["index"], x)
        it.invoke()
        logits = it.get_tensor(out["index"])
        if out["dtype"] != np.float32:  # int8 output: dequantise
            scale, zero = out["quantization"]
            logits = (logits.astype(np.float32) - zero) * scale
        return logits

    def probs(f) -> np.ndarray:
        return np.concatenate(
            [torch.softmax(torch.as_tensor(f(test[i : i + 1])), 1).numpy() for i in range(len(test))]
        )

    with torch.no_grad():
        ref = probs(lambda x: net(torch.from_numpy(x)))
        qref = probs(lambda x: qnet(torch.from_numpy(x)))
    got = probs(tflite)

    def macro(p: np.ndarray) -> float:
        pred = p.argmax(1)
        return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))

    print(f"{a.out}: {os.path.getsize(a.out):,} bytes; {len(test)} clips of the evaluate split")
    for name, other in (("float32 PyTorch", ref), ("PT2E int8 PyTorch", qref)):
        print(
            f"TFLite int8 vs {name}: max probability difference {np.abs(other - got).max():.3f}, "
            f"same decisions {100 * np.mean(other.argmax(1) == got.argmax(1)):.1f}%"
        )
    print(
        f"class-wise accuracy: float32 {100 * macro(ref):.1f}%, PT2E int8 {100 * macro(qref):.1f}%, TFLite int8 {100 * macro(got):.1f}%"
    )


if __name__ == "__main__":
    main()
