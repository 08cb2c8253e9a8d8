"""Inference speed of one clip: the frontend, the model in PyTorch and in onnxruntime, one thread.

    python benchmarks/infer_speed.py [--models dcase2021_baseline bcresnet_asc_c20 ...] [--calls 20]

For each model as registered (untrained weights: the time is the same) builds its frontend and exports
the model (normalisation inside, as ``tinyasc predict --runtime onnxruntime`` does), then times one
clip at batch 1 on one thread: the log-mel of the clip, the PyTorch model and the onnxruntime session,
interleaved call by call (A B A B) so that the machine's load falls on both alike. Prints the median
wall time per call, the process CPU time per call, and the ratio PyTorch / onnxruntime, with the load.
"Before" is the same clip as tinyasc computed it before the engine work, timed in the same loop: the
dense log-mel of ``frontend_speed.DenseLogMel`` and the PyTorch model with ATen's 2x2 max pooling
(``train_speed.aten_pools``); "now" is the frontend and onnxruntime, the default runtime of
``predict`` and ``stream`` for a float model, at the optimisation level the model's family declares
(the allocator is tinyasc's in both).

``--levels`` times each exported model in onnxruntime with all graph optimisations (the default,
which includes the NCHWc layout transforms around convolutions) against the extended level (the same
fusions without the layout transforms), interleaved call by call.

``--int8`` times the model's int8 forms in a second table, interleaved with its float32 PyTorch
model: tinyasc's int8 (``compress/int8.py``, what ``quantize: int8`` ships, computed in float32 from
its integers; its input ranges calibrated on 4 random batches, which changes nothing of the time) in
PyTorch and in onnxruntime (exported as ``predict`` runs an int8 model file), and onnxruntime's static
int8 (QDQ, as ``tinyasc export --int8``, its int8 kernels), each against float32 in the same runtime
(onnxruntime at the optimisation level the family declares). Where torchao is importable (not a tinyasc dependency), a column more: the same model through
torchao's PT2E flow (``torch.export``, the x86 quantizer's static int8 config, the same 4 calibration
batches, ``convert_pt2e``) run as PyTorch runs the converted graph without compiling it
(``--pt2e-compile``: through ``torch.compile`` with inductor's frozen weights, which lowers it to int8
kernels; the first call's compilation printed beside it); and the largest logit difference of each
PyTorch int8 form to float32.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from frontend_speed import DenseLogMel
from timing import cpu_name, timed
from tinyasc.config import FrontendConfig
from tinyasc.export import INPUT, Deployable, export_module, layout_transforms, onnx_session
from tinyasc.frontend import LogMel, Normalizer
from tinyasc.models import create_model, get_model_info
from train_speed import aten_pools

DEFAULT = ["dcase2021_baseline", "bcresnet_asc_c20", "cpresnet_c20", "mobilenetv2_s", "cpmobile_dcase2024"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=DEFAULT)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--int8", action="store_true", help="time the int8 forms against float32")
    p.add_argument("--levels", action="store_true", help="time onnxruntime's optimisation levels")
    p.add_argument(
        "--pt2e-compile",
        action="store_true",
        help="with --int8: run the PT2E int8 graph through torch.compile (inductor, frozen weights)",
    )
    a = p.parse_args()
    if a.levels:
        return levels_table(a.models, a.calls)
    if a.int8:
        return int8_table(a.models, a.calls, a.pt2e_compile)
    torch.set_num_threads(1)
    print(
        f"load average {os.getloadavg()[0]:.2f}; 1 thread; batch 1; median of {a.calls} calls; {cpu_name()}\n"
    )
    print(
        "| model | input | frontend ms | PyTorch model ms (CPU ms) | onnxruntime model ms (CPU ms) | "
        "PyTorch / onnxruntime | with the frontend | before ms | now vs before |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name in a.models:
            info = get_model_info(name)
            fe = FrontendConfig(**info.frontend)
            logmel = LogMel(fe)
            module = Deployable(Normalizer(info.n_mels), create_model(name).eval()).eval()
            dense = DenseLogMel(fe)
            former = Deployable(Normalizer(info.n_mels), create_model(name).eval()).eval()
            former.load_state_dict(module.state_dict())
            aten_pools(former)
            audio = torch.randn(1, fe.clip_samples) * 0.1
            x = logmel(audio)
            path = Path(tmp) / f"{name}.onnx"
            export_module(module, x, path)
            session = onnx_session(path, threads=1, layout_transforms=layout_transforms(module.net))
            xn = x.numpy()
            for _ in range(3):  # warm-up
                module(x), former(dense(audio))
                session.run(None, {INPUT: xn})
            fe_t, pt, ort, before = [], [], [], []
            for _ in range(a.calls):
                fe_t.append(timed(logmel, audio))
                pt.append(timed(module, x))
                ort.append(timed(session.run, None, {INPUT: xn}))
                before.append(timed(former_clip, former, dense, audio))

            def ms(rows, i):
                return 1000 * statistics.median(r[i] for r in rows)

            print(
                f"| {name} | {info.n_mels}x{info.frames} | {ms(fe_t, 0):.1f} | {ms(pt, 0):.1f} ({ms(pt, 1):.1f}) | "
                f"{ms(ort, 0):.1f} ({ms(ort, 1):.1f}) | {ms(pt, 0) / ms(ort, 0):.2f}x | "
                f"{(ms(fe_t, 0) + ms(pt, 0)) / (ms(fe_t, 0) + ms(ort, 0)):.2f}x | {ms(before, 0):.1f} | "
                f"{ms(before, 0) / (ms(fe_t, 0) + ms(ort, 0)):.2f}x |",
                flush=True,
            )


def former_clip(model, frontend, audio):
    """One clip as tinyasc computed it before: its frontend, then the PyTorch model."""
    return model(frontend(audio))


def levels_table(models: list[str], calls: int) -> None:
    import onnxruntime as ort

    torch.set_num_threads(1)
    print(
        f"load average {os.getloadavg()[0]:.2f}; 1 thread; batch 1; median of {calls} calls; {cpu_name()}\n"
    )
    print("| model | all optimisations ms | extended, no layout transforms ms | all / extended |")
    print("|---|---|---|---|")
    levels = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name in models:
            info = get_model_info(name)
            x = torch.randn(1, 1, info.n_mels, info.frames)
            path = Path(tmp) / f"{name}.onnx"
            export_module(Deployable(Normalizer(info.n_mels), create_model(name).eval()).eval(), x, path)
            sessions = []
            for level in levels:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
                opts.graph_optimization_level = level
                opts.log_severity_level = 3
                sessions.append(ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]))
            xn = x.numpy()
            for _ in range(3):  # warm-up
                [s.run(None, {INPUT: xn}) for s in sessions]
            rows: list[list] = [[], []]
            for _ in range(calls):
                for i, s in enumerate(sessions):
                    rows[i].append(timed(s.run, None, {INPUT: xn}))
            ms = [1000 * statistics.median(r[0] for r in rows[i]) for i in range(2)]
            print(f"| {name} | {ms[0]:.2f} | {ms[1]:.2f} | {ms[0] / ms[1]:.2f}x |", flush=True)


def pt2e_int8(net: torch.nn.Module, example: torch.Tensor, batches: list[torch.Tensor]):
    """``net`` quantised through torchao's PT2E flow (x86 quantizer, static int8), or None without torchao."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError:
        return None
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(torch.export.export(net, (example,)).module(), quantizer)
    for b in batches:
        prepared(b)
    return convert_pt2e(prepared)


def int8_table(models: list[str], calls: int, compile_pt2e: bool = False) -> None:
    import warnings

    from tinyasc.compress import int8
    from tinyasc.export import quantize_onnx

    warnings.simplefilter("ignore")  # torchao's notes on every observer

    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; 1 thread; batch 1; median of {calls} calls; model only\n")
    print(
        "| model | PyTorch float32 ms | tinyasc int8 in PyTorch ms | / float32 | onnxruntime float32 ms | "
        "tinyasc int8 in onnxruntime ms | / float32 | onnxruntime static int8 ms | / float32 | "
        f"PT2E int8 ms ({'compiled' if compile_pt2e else 'uncompiled'}) | / float32 | "
        "largest logit difference tinyasc / PT2E |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name in models:
            info = get_model_info(name)
            x = torch.randn(1, 1, info.n_mels, info.frames)
            net = create_model(name).eval()
            prepared = int8.prepare(net, x)
            batches = [torch.randn(4, 1, info.n_mels, info.frames) for _ in range(4)]
            int8.calibrate(prepared, batches)
            q = int8.convert(prepared)
            q2 = pt2e_int8(net, x, [b[:1] for b in batches])  # the exported graph is for batch 1
            compile_s = None
            if q2 is not None and compile_pt2e:
                import torch._inductor.config as inductor

                inductor.freezing = True  # weights as constants: what inductor's int8 oneDNN kernels need
                q2 = torch.compile(q2)
                t0 = time.perf_counter()
                q2(x)
                compile_s = time.perf_counter() - t0
            path, qpath = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}_int8.onnx"
            ours = Path(tmp) / f"{name}_tinyasc_int8.onnx"
            export_module(Deployable(Normalizer(info.n_mels), net).eval(), x, path)
            export_module(Deployable(Normalizer(info.n_mels), q).eval(), x, ours)  # as predict runs it
            quantize_onnx(
                path, qpath, [torch.randn(1, 1, info.n_mels, info.frames).numpy() for _ in range(4)]
            )
            layout = layout_transforms(net)
            sessions = [onnx_session(p, threads=1, layout_transforms=layout) for p in (path, ours, qpath)]
            xn = x.numpy()
            for _ in range(3):  # warm-up
                net(x), q(x), [s.run(None, {INPUT: xn}) for s in sessions]
                if q2 is not None:
                    q2(x)
            rows: list[list] = [[] for _ in range(6)]
            for _ in range(calls):
                rows[0].append(timed(net, x))
                rows[1].append(timed(q, x))
                for i, s in enumerate(sessions):
                    rows[2 + i].append(timed(s.run, None, {INPUT: xn}))
                if q2 is not None:
                    rows[5].append(timed(q2, x))
            ms = [1000 * statistics.median(r[0] for r in rows[i]) if rows[i] else None for i in range(6)]
            ref = net(x)
            diff = f"{float((q(x) - ref).abs().max()):.3f} / " + (
                f"{float((q2(x) - ref).abs().max()):.3f}" if q2 is not None else "-"
            )
            pt2e = f"{ms[5]:.1f} | {ms[5] / ms[0]:.2f}x" if ms[5] is not None else "- | -"
            if compile_s is not None:
                pt2e = pt2e.replace(" |", f" (compiled in {compile_s:.1f} s) |", 1)
            print(
                f"| {name} | {ms[0]:.1f} | {ms[1]:.1f} | {ms[1] / ms[0]:.2f}x | {ms[2]:.1f} | {ms[3]:.1f} | "
                f"{ms[3] / ms[2]:.2f}x | {ms[4]:.1f} | {ms[4] / ms[2]:.2f}x | {pt2e} | {diff} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
