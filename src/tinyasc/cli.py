"""Command line: the argument parser of every subcommand; ``commands.py`` does the work.

Only the standard library is imported until the arguments are parsed, so ``tinyasc --help`` and a
mistyped option answer without loading torch.
"""

from __future__ import annotations

import argparse
import logging
import sys

from tinyasc import engine  # standard library only: safe before torch
from tinyasc.rules import RULES


def _rules_option(s: argparse.ArgumentParser, help: str) -> None:
    s.add_argument("--rules", choices=list(RULES), default=None, help=help)


def _runtime_option(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--runtime",
        choices=["auto", "torch", "onnxruntime"],
        default="auto",
        help="auto (default): onnxruntime for a float model where it is installed (exported once into the "
        "cache and checked against PyTorch), else PyTorch",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinyasc",
        description="Low-complexity acoustic scene classification (DCASE 2021 Task 1A; the 2022-2025 rules with --rules)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="check a dataset and print counts per split, device and class")
    s.add_argument("root", help="TAU root (with evaluation_setup/), or the audio folder of a generic dataset")
    s.add_argument("--csv", help="generic dataset: filename<TAB>scene_label [fold] [device] [identifier]")
    s.add_argument(
        "--json", action="store_true", help="JSON: counts, and the validation files of the training split"
    )
    s.add_argument(
        "--no-audio", action="store_true", help="skip the audio checks (inspect split files alone)"
    )
    s.add_argument(
        "--validation-fraction",
        type=float,
        default=0.3,
        help="--json lists the validation files of the training split at this fraction (default 0.3)",
    )
    s.add_argument("--validation-seed", type=int, default=0, help="... and this seed (default 0)")

    s = sub.add_parser("synth", help="write a synthetic corpus in the exact TAU 2020 Mobile layout")
    s.add_argument("out")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--per-class-device",
        type=int,
        default=None,
        help="files per (split, scene, device); default 20 (with --evaluation: the real 7,920-file list)",
    )
    g.add_argument(
        "--fraction", type=float, default=None, help="fraction of the real split per (split, scene, device)"
    )
    s.add_argument(
        "--evaluate-fraction",
        type=float,
        default=None,
        help="fraction of the real evaluate split (default: as the training part), e.g. 1.0 for all 2,968",
    )
    s.add_argument("--duration", type=float, default=10.0, help="seconds per clip (default 10)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=2)
    s.add_argument(
        "--evaluation",
        action="store_true",
        help="2021 evaluation-set layout (audio/<n>.wav, no labels): the real list of 7,920 files, or with "
        "--per-class-device N a smaller test list",
    )
    s.add_argument("--reference", help="--evaluation: where to write the labels (default OUT.reference.csv)")
    s.add_argument(
        "--layout",
        choices=["tau2020", "tau2022"],
        default="tau2020",
        help="tau2022: the 1-s snippets of the 2022-2025 editions (each clip cut into --duration snippets)",
    )
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "tau2022", help="cut a TAU 2020 Mobile root (real or synthetic) into the 1-s layout of 2022-2025"
    )
    s.add_argument("source", help="a TAU 2020 Mobile development root")
    s.add_argument("out", help="the 2022-layout root to write (resumable)")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "subsets", help="write split_setup/split{5,10,25,50,100}.csv, the DCASE 2024 training subsets"
    )
    s.add_argument("root", help="a TAU root (2022 layout for the 2024 task)")
    s.add_argument("--percent", type=int, nargs="*", default=None, help="default: 5 10 25 50 100")
    s.add_argument("--seed", type=int, default=0)

    s = sub.add_parser("train", help="train a model from a YAML config plus key=value overrides")
    s.add_argument("config", help="YAML file (a diff against the defaults), e.g. configs/baseline.yaml")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=PATH train.epochs=20")
    s.set_defaults(overrides_into="overrides")
    s.add_argument("--run-dir", required=True, help="the run directory to write (or continue with --resume)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run in --run-dir")
    s.add_argument(
        "--evaluate",
        action="store_true",
        help="evaluate on the evaluate split afterwards (fold1_evaluate of a TAU root, the held-out folds of a generic dataset)",
    )
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser("ensemble", help="average trained runs into one shipped model (a budget ensemble)")
    s.add_argument("runs", nargs="+", help="two or more trained runs with the same classes and frontend")
    s.add_argument("--out", required=True, help="the new run directory of the ensemble")
    s.add_argument("--no-evaluate", action="store_true", help="skip the evaluation on the evaluate split")
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "crossval", help="one run per held-out fold of a dataset with folds: mean and spread over the folds"
    )
    s.add_argument("config", help="YAML config of every run (a generic dataset with a fold column)")
    s.add_argument("overrides", nargs="*", help="dotted overrides, as in train, e.g. data.root=PATH")
    s.set_defaults(overrides_into="overrides")
    s.add_argument("--out", required=True, help="folder of the runs (fold_K/) and crossval.json / .md")
    s.add_argument("--folds", nargs="+", help="the folds to hold out (default: every fold)")
    s.add_argument(
        "--teachers",
        nargs="+",
        metavar="CONFIG",
        help="distil from a teacher ensemble of these configs, trained per fold without the held-out fold "
        "(they take the data.* and frontend.duration overrides; sets train.kd_logits per fold)",
    )
    s.add_argument(
        "--teacher-seeds", type=int, default=1, help="teachers per config, seeds 0..N-1 (default 1)"
    )
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "teachers", help="train a teacher ensemble and store its logits on the training fold for distillation"
    )
    s.add_argument(
        "configs",
        nargs="+",
        metavar="CONFIG_OR_OVERRIDE",
        help="one YAML config per teacher (any registered model), and dotted key=value overrides for "
        "every teacher, as in train (e.g. data.root=PATH)",
    )
    s.set_defaults(overrides_into="configs")
    s.add_argument("--out", required=True, help="folder for the teacher runs, logits.npz and teachers.json")
    s.add_argument("--seeds", type=int, default=1, help="teachers per config, seeds 0..N-1 (default 1)")
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "evaluate",
        help="evaluate a run's shipped model on its evaluate split (TAU: fold1_evaluate; generic: the held-out folds)",
    )
    s.add_argument("run_dir")
    s.add_argument("--json", action="store_true")
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser("score", help="score a DCASE-format output.csv against a reference CSV")
    s.add_argument("output")
    s.add_argument("reference", help="filename<TAB>scene_label [identifier source_label]")
    s.add_argument(
        "--classes", help="comma-separated class names of a generic dataset (default: the 10 TAU scenes)"
    )
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("compare", help="evaluated runs side by side, with a size-versus-accuracy plot")
    s.add_argument("runs", nargs="+", help="run directories, each evaluated (tinyasc evaluate RUN)")
    s.add_argument("--plot", help="write the size-versus-accuracy plot to this PNG file")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser(
        "compress",
        help="compress a trained run (float16, int8 PTQ/QAT, pruning, 1-bit) into a new run directory",
    )
    s.add_argument("run", help="the trained source run (read only)")
    s.add_argument(
        "overrides",
        nargs="*",
        help="dotted key=value overrides for the fine-tune, as in train (e.g. train.batch_size=32)",
    )
    s.set_defaults(overrides_into="overrides")
    s.add_argument(
        "--method",
        required=True,
        help="float16 | float32 | int8-ptq | int8-qat | binary, optionally after prune: e.g. prune+int8-ptq",
    )
    s.add_argument("--out", required=True, help="the new run directory (must not exist)")
    s.add_argument("--target", type=float, help="prune: sparsity of the conv/linear weights, e.g. 0.7")
    s.add_argument("--target-bytes", type=int, help="prune: the sparsity that stores at most this many bytes")
    s.add_argument("--scope", default="global", help="prune: global (one threshold) or layer")
    s.add_argument("--schedule", default="linear", help="prune: ramp linear or exponential")
    s.add_argument("--ramp-epochs", type=int, help="prune: epochs to reach the target (default half)")
    s.add_argument("--exclude", action="append", default=[], help="prune: a layer name to keep dense")
    s.add_argument("--epochs", type=int, help="fine-tune epochs for prune, int8-qat, binary (default 10)")
    s.add_argument("--lr", type=float, help="fine-tune peak learning rate (default: the source's / 10)")
    s.add_argument("--calibration-clips", type=int, help="int8-ptq: training clips to calibrate on")
    _rules_option(s, "the edition the new run is checked against (default: the source's)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune")
    s.add_argument("--no-evaluate", action="store_true", help="skip the evaluation on the evaluate split")
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "device-heads",
        help="DCASE 2025: fine-tune the model's head once per recording device; prediction picks the head "
        "of each file's device (unknown devices: the shared model)",
    )
    s.add_argument("run", help="the trained source run (read only; float32 or float16)")
    s.add_argument("--out", required=True, help="the new run directory (must not exist)")
    s.add_argument(
        "--devices", nargs="*", default=None, help="devices to give a head (default: every training device)"
    )
    s.add_argument(
        "--head",
        choices=["last", "after"],
        default="last",
        help="last: the last conv/linear layer and the layers after it (default); after: only the layers "
        "after it (e.g. a final batch norm: a few parameters per class and device)",
    )
    _rules_option(s, "the edition the new run is checked against (default: the source's)")
    s.add_argument("--epochs", type=int, default=10, help="fine-tune epochs per device (default 10)")
    s.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 0.001)")
    s.add_argument("--no-evaluate", action="store_true", help="skip the evaluation on the evaluate split")
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "export", help="export a run to ONNX (log-mel in, probabilities out) with its contract"
    )
    s.add_argument("run", help="a trained run directory")
    s.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "c"],
        help="onnx: the graph for onnxruntime; c: the shipped model's stored tensors as C arrays for firmware",
    )
    g = s.add_mutually_exclusive_group()
    g.add_argument("--float16", action="store_true", help="float16 weights and arithmetic")
    g.add_argument(
        "--int8",
        action="store_true",
        help="int8: a run that ships int8, its own int8 model; a float run, onnxruntime static int8 (QDQ)",
    )
    s.add_argument("-o", "--out", help="the .onnx file (default: RUN/model[_float16|_int8].onnx)")
    s.add_argument("--check-clips", type=int, default=256, help="clips of the evaluate split to check it on")
    s.add_argument(
        "--calibration-clips",
        type=int,
        default=256,
        help="--int8 of a float run: training clips to calibrate",
    )

    s = sub.add_parser("size", help="DCASE 2021 size table of a run, a model file or a registered model")
    s.add_argument("target", help="run directory, model file, or model name (e.g. dcase2021_baseline)")
    s.add_argument(
        "--precision",
        choices=["float32", "float16", "float16-all", "float16-folded", "int8"],
        help="count the float model at this precision (default: the stored one; float16 for a name); "
        "int8 is the per-channel estimate of what int8 quantisation would store",
    )
    s.add_argument("--limit", type=int, default=None, help="limit in bytes (default 128000)")
    s.add_argument(
        "--classes", type=int, default=10, help="a model name: build it for this many classes (default 10)"
    )
    s.add_argument(
        "--fit-bytes",
        type=int,
        default=None,
        help="a model name: scale its widths to the widest that stores at most this many bytes for --classes "
        "(at --precision, default what it ships as); prints the model.params to train it with",
    )
    _rules_option(
        s,
        "give this edition's verdict (parameters or bytes, MACs per second, clip length) instead of the "
        "2021 size table",
    )
    s.add_argument("--json", action="store_true")

    s = sub.add_parser(
        "models", help="every registered model: parameters, bytes at float32/float16/int8, MACs, fit"
    )
    s.add_argument("names", nargs="*", help="only these models (default: all)")
    _rules_option(
        s, "each model built for this edition's clip length, with its parameters, MACs per second and verdict"
    )
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("predict", help="predict scenes of any audio files, folders or list files")
    s.add_argument("model", help="run directory or tinyasc model file (model.pt, model_float16.pt)")
    s.add_argument("inputs", nargs="+", help="audio files, folders (searched recursively) or .txt/.lst lists")
    s.add_argument(
        "-o", "--output", help="out.csv (DCASE columns + error) or out.jsonl; default: CSV on stdout"
    )
    s.add_argument("--window", type=float, help="window length in seconds (default: the model's clip length)")
    s.add_argument("--hop", type=float, help="hop between windows in seconds (default: the window)")
    s.add_argument("--per-window", action="store_true", help="also write each window's probabilities")
    s.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--no-calibration", action="store_true", help="ignore the run's temperature")
    _runtime_option(s)

    s = sub.add_parser("stream", help="classify a live or piped stream: one labelled line per hop")
    s.add_argument("model", help="run directory or model file (any storage), or an ONNX export")
    s.add_argument(
        "--input",
        default="-",
        help="an audio file, - for raw 16-bit PCM on stdin (default -), or mic for a microphone (needs the "
        "sounddevice package and PortAudio, not installed by tinyasc)",
    )
    s.add_argument("--rate", type=int, default=44100, help="stdin PCM or mic: sample rate (default 44100)")
    s.add_argument("--channels", type=int, default=1, help="stdin PCM or mic: channels (default 1)")
    s.add_argument("--window", type=float, help="window in seconds (default: the model's clip length)")
    s.add_argument("--hop", type=float, default=1.0, help="seconds between predictions (default 1)")
    s.add_argument(
        "--smooth",
        type=float,
        default=1.0,
        help="weight of the newest window in the moving average (1 = none)",
    )
    s.add_argument("--realtime", action="store_true", help="a file: read it at the pace it was recorded")
    s.add_argument("--block", type=int, default=4096, help="samples read at a time (default 4096)")
    _runtime_option(s)
    s.add_argument("-o", "--output", help="write the lines here instead of stdout")

    s = sub.add_parser("calibrate", help="fit temperature scaling on the validation split and store it")
    s.add_argument("run_dir")
    s.add_argument(
        "--allow-sharpening",
        action="store_true",
        help="let the fit choose T < 1 (unsafe under device shift; see tinyasc.evaluate.calibration)",
    )
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser("submit", help="write the DCASE 2021 Task 1A submission package for an evaluation set")
    s.add_argument("run_dir")
    s.add_argument("eval_root", help="evaluation-set root (audio/<n>.wav, evaluation_setup/fold1_test.csv)")
    s.add_argument("--label", required=True, help="Lastname_Institute_task1a_N (N in 1-4)")
    s.add_argument(
        "--meta", required=True, help="YAML with submission: name, abbreviation, authors (and system:)"
    )
    s.add_argument("-o", "--out", default="submission", help="output folder (default ./submission)")
    s.add_argument("--report", help="the technical report (PDF) the instructions require, put into the zip")
    s.add_argument("--workers", type=int, default=2)

    s = sub.add_parser(
        "check-submission",
        help="check a submission zip: the organisers' rules (errors) and tinyasc's stricter ones (warnings)",
    )
    s.add_argument("package", help="the submission zip")
    s.add_argument(
        "eval_root",
        nargs="?",
        help="evaluation-set root whose file list to check against (default: the real 2021 list, "
        "audio/0.wav ... audio/7919.wav)",
    )

    s = sub.add_parser("download", help="download, verify (md5) and extract TAU 2020 Mobile packages")
    s.add_argument("dest", help="folder that will hold TAU-urban-acoustic-scenes-2020-mobile-*/")
    s.add_argument(
        "--dataset", default="development", help="which packages: development (default) or evaluation-2020"
    )
    s.add_argument("--parallel", type=int, default=2, help="packages fetched at once (default 2)")
    s.add_argument("--base-url", help="mirror URL template with {filename} (and optionally {record})")
    s.add_argument("--only", nargs="+", help="only these packages, e.g. doc meta audio.1")
    s.add_argument(
        "--retries", type=int, default=5, help="attempts after the first, with backoff (default 5)"
    )
    s.add_argument("--remove-archives", action="store_true", help="delete each zip after extracting it")
    s.add_argument("--quiet", action="store_true")

    s = sub.add_parser(
        "demo", help="synthetic corpus -> baseline -> float16 -> evaluation, in minutes on a CPU"
    )
    s.add_argument("--dir", default="tinyasc_demo", help="working folder (default ./tinyasc_demo)")
    s.add_argument("--quick", action="store_true", help="about a minute: a tiny corpus and two epochs")
    s.add_argument("--workers", type=int, default=2)
    _fill_help(sub)
    return p


# Help for the options many subcommands share, where a subcommand gives none of its own.
COMMON_HELP = {
    "quiet": "no progress bars",
    "json": "print the result as JSON",
    "workers": "worker processes for decoding and features (default 2)",
    "seed": "random seed (default 0)",
    "run_dir": "a run directory (what tinyasc train --run-dir wrote)",
    "out": "the folder to write",
    "output": "a DCASE output file (filename, scene_label, one probability column per class)",
    "format": "the export format (onnx)",
    "batch_size": "clips per model call (default 32)",
}


def _fill_help(sub: argparse._SubParsersAction) -> None:
    for parser in sub.choices.values():
        for action in parser._actions:
            if action.help is None and action.dest in COMMON_HELP:
                action.help = COMMON_HELP[action.dest]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line. Dotted key=value overrides may also follow the options
    (``tinyasc train CONFIG --quiet train.epochs=5``), which argparse alone would refuse."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    late = [r for r in rest if "=" in r and not r.startswith("-")]
    if rest and (late != rest or not hasattr(args, "overrides_into")):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if late:
        getattr(args, args.overrides_into).extend(late)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    engine.prepare_process()  # allocator and OpenMP wait policy: before torch loads and allocates
    from tinyasc import commands  # loads torch and the library: only once the arguments are parsed

    return commands.run(args)


if __name__ == "__main__":
    sys.exit(main())
