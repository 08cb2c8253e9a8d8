"""Command line: each subcommand parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def _print_index(summary: dict) -> None:
    print(f"{summary['root']} ({summary['kind']})")
    for split, s in summary["splits"].items():
        devs = "  ".join(f"{d.upper()} {n:,}" for d, n in s["devices"].items() if d)
        print(f"{split:9s} {s['files']:>7,} files  {s['locations']:>4} locations  {devs}")
        if s["classes"]:
            print("          " + "  ".join(f"{c} {n:,}" for c, n in sorted(s["classes"].items())))
    shared = summary["shared_locations"]
    print(
        f"locations in both train and evaluate: {len(shared)}"
        + (f" ({', '.join(shared[:5])})" if shared else "")
    )


def cmd_index(a) -> int:
    from tinyasc.data.index import load_generic, load_tau

    if a.csv:
        index = load_generic(a.csv, a.root, check_audio=not a.no_audio)
    else:
        index = load_tau(a.root, check_audio=not a.no_audio)
    summary = index.summary()
    if a.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_index(summary)
    return 0


def cmd_synth(a) -> int:
    from tinyasc.data.synth import SynthSpec, write_corpus, write_evaluation_corpus

    if a.evaluation:
        res = write_evaluation_corpus(
            a.out,
            a.per_class_device or 10,
            a.duration,
            a.seed,
            a.workers,
            reference=a.reference,
            progress=not a.quiet,
        )
        print(
            f"{a.out}: {res['test']} evaluation files ({res['written']} written); reference: {res['reference']}"
        )
        return 0
    if a.fraction is not None:
        spec = SynthSpec(
            per_class_device=None,
            fraction=a.fraction,
            duration=a.duration,
            seed=a.seed,
            evaluate_fraction=a.evaluate_fraction,
        )
    else:
        spec = SynthSpec(
            per_class_device=a.per_class_device or 20,
            duration=a.duration,
            seed=a.seed,
            evaluate_fraction=a.evaluate_fraction,
        )
    res = write_corpus(a.out, spec, workers=a.workers, progress=not a.quiet)
    print(
        f"{a.out}: {res['train']} train + {res['evaluate']} evaluate files from {res['segments']} segments "
        f"({res['written']} written now)"
    )
    return 0


def cmd_train(a) -> int:
    from tinyasc.config import load_config
    from tinyasc.train.run import fit

    cfg = load_config(a.config, a.overrides)
    res = fit(cfg, a.run_dir, resume=a.resume, progress=not a.quiet)
    print(
        f"trained {cfg.model.name}: best epoch {res['best']['epoch']} "
        f"(val accuracy {res['best']['val_accuracy']:.3f}); shipped {res['shipped']} in {a.run_dir}"
    )
    if a.evaluate:
        return cmd_evaluate(argparse.Namespace(run_dir=a.run_dir, json=False, quiet=a.quiet))
    print(f"next: tinyasc evaluate {a.run_dir}")
    return 0


def cmd_teachers(a) -> int:
    from tinyasc.config import ConfigError, load_config
    from tinyasc.distill.teachers import train_teachers

    configs = []
    for spec in a.configs:
        if not spec.endswith((".yaml", ".yml")):
            raise ConfigError(f"{spec}: expected a YAML config; pass overrides with --set KEY=VALUE")
        for seed in range(a.seeds):
            configs.append(load_config(spec, [*a.set, f"train.seed={seed}"] if a.seeds > 1 else a.set))
    record = train_teachers(configs, a.out, progress=not a.quiet)
    print(
        f"{len(record['teachers'])} teachers; ensemble logits of {record['files']} training clips in "
        f"{a.out}/logits.npz (training-fold accuracy {record['training_fold_accuracy']:.3f})"
    )
    print(f"next: tinyasc train CONFIG train.kd_logits={a.out} ... to distil them into a student")
    return 0


def _overall_line(m: dict) -> str:
    o = m["overall"]
    return (
        f"accuracy {100 * o['accuracy']:.1f}% (±{100 * o['accuracy_ci95']:.1f}), "
        f"log loss {o['logloss']:.3f} (±{o['logloss_ci95']:.3f}) on {o['files']} files"
    )


def cmd_evaluate(a) -> int:
    from tinyasc.evaluate.run import evaluate_run

    m = evaluate_run(a.run_dir, progress=not a.quiet)
    if a.json:
        print(json.dumps(m, indent=2))
    else:
        print(_overall_line(m))
        if "uncalibrated" in m:
            print(
                f"  calibrated (T = {m['temperature']:.3f}): log loss {m['uncalibrated']['logloss']:.3f} before"
            )
        for g, s in m["group_wise"].items():
            print(f"  {g:8s} accuracy {100 * s['accuracy']:.1f}%  log loss {s['logloss']:.3f}")
        print(f"report: {Path(a.run_dir) / 'report.md'}")
    return 0


def cmd_score(a) -> int:
    from tinyasc.evaluate.run import score

    m = score(a.output, a.reference, tuple(a.classes.split(",")) if a.classes else None)
    if a.json:
        print(json.dumps(m, indent=2))
    else:
        print(_overall_line(m))
        for d, s in m["device_wise"].items():
            print(f"  {d:4s} accuracy {100 * s['accuracy']:.1f}%  log loss {s['logloss']:.3f}")
    return 0


def cmd_compress(a) -> int:
    from tinyasc.compress.run import CompressOptions, compress_run

    opts = CompressOptions(
        target=a.target,
        target_bytes=a.target_bytes,
        scope=a.scope,
        schedule=a.schedule,
        ramp_epochs=a.ramp_epochs,
        exclude=tuple(a.exclude),
        epochs=a.epochs,
        lr=a.lr,
        calibration_clips=a.calibration_clips,
        overrides=list(a.overrides),
    )
    rec = compress_run(
        a.run, a.out, a.method, opts, resume=a.resume, evaluate=not a.no_evaluate, progress=not a.quiet
    )
    size = rec["size"]
    line = f"{a.out}: {rec['storage']}, {size['nonzero_bytes']:,} bytes of non-zero parameters"
    if rec.get("sparsity") is not None:
        line += f" (sparsity {rec['sparsity']:.4f})"
    if rec.get("source_size_bytes"):
        line += f"; source shipped {rec['source_size_bytes']:,} bytes"
    print(line)
    ev = rec.get("evaluation")
    if ev:
        print(f"fold1_evaluate: accuracy {100 * ev['accuracy']:.1f}%, log loss {ev['logloss']:.3f}")
    print(f"{'PASS' if size['fits'] else 'FAIL'}: limit {size['limit_bytes']:,} bytes")
    return 0 if size["fits"] else 1


def cmd_export(a) -> int:
    from tinyasc.export import check_onnxruntime, export_onnx

    check_onnxruntime()
    precision = "int8" if a.int8 else "float16" if a.float16 else "float32"
    suffix = {"float32": "", "float16": "_float16", "int8": "_int8"}[precision]
    out = a.out or str(Path(a.run) / f"model{suffix}.onnx")
    c = export_onnx(a.run, out, precision, a.check_clips, a.calibration_clips)
    k = c["check"]
    print(
        f"{out}: {precision} ONNX, {c['bytes_on_disk']:,} bytes on disk; contract {out}.json\n"
        f"onnxruntime vs {k['reference']} on {k['clips']} fold1_evaluate clips: max probability difference "
        f"{k['max_abs_probability_difference']:.2e}, same decisions {100 * k['same_decisions']:.1f}%"
    )
    return 0


def cmd_size(a) -> int:
    from tinyasc.compress.macs import count_macs
    from tinyasc.compress.ship import build_model, load_stored, size_report
    from tinyasc.compress.size import LIMIT_BYTES, model_size
    from tinyasc.evaluate.predict import shipped_model_path
    from tinyasc.models import create_model, get_model_info
    from tinyasc.train.checkpoint import CheckpointError, load_checkpoint

    target = Path(a.target)
    if target.exists():
        path = (
            (target / "model.pt" if a.precision else shipped_model_path(target))
            if target.is_dir()
            else target
        )
        art = load_checkpoint(path)
        if art.get("format") != "tinyasc-model-1":
            raise CheckpointError(f"{path}: not a tinyasc model file (format {art.get('format')!r})")
        model = build_model(art)
        if a.precision:  # what the float model would store at another precision
            if art["storage"] not in ("float32", "float16"):
                raise CheckpointError(
                    f"{path}: stored as {art['storage']}; --precision re-counts a float model "
                    "(drop --precision to count what it stores)"
                )
            model = load_stored(art)
            report = model_size(model, a.precision)
        else:
            report = size_report(art)
    else:
        get_model_info(a.target)
        model = create_model(a.target)
        report = model_size(model, a.precision or "float16")
    report.limit = a.limit or LIMIT_BYTES
    macs = count_macs(model).total
    if a.json:
        print(json.dumps({**report.to_dict(), "macs": macs}, indent=2))
    else:
        print(report.table())
        print(f"MACs for one clip ({model.n_mels} x {model.frames}): {macs:,} (conv + linear layers)")
    return 0 if report.fits else 1


def cmd_models(a) -> int:
    from tinyasc.models.zoo import format_table, model_table

    rows = model_table(a.names or None)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0


def cmd_predict(a) -> int:
    from tinyasc.evaluate.calibration import load_temperature
    from tinyasc.evaluate.infer import collect_inputs, format_csv, format_jsonl, predict_files
    from tinyasc.evaluate.predict import load_model
    from tinyasc.io import atomic_write_text

    lm = load_model(a.model)
    temperature = 1.0 if a.no_calibration else load_temperature(a.model)
    paths, failed = collect_inputs(a.inputs)
    results = failed + predict_files(lm, paths, a.window, a.hop, a.workers, a.batch_size, temperature)
    as_json = a.output is not None and Path(a.output).suffix.lower() in {".json", ".jsonl"}
    text = (format_jsonl if as_json else format_csv)(results, lm.classes, a.per_window)
    if a.output:
        atomic_write_text(a.output, text)
    else:
        sys.stdout.write(text)
    bad = [r for r in results if r.error]
    for r in bad:
        print(f"tinyasc predict: {r.path}: {r.error}", file=sys.stderr)
    ok = len(results) - len(bad)
    print(
        f"{ok} file(s) predicted, {len(bad)} failed" + (f"; wrote {a.output}" if a.output else ""),
        file=sys.stderr,
    )
    return 1 if bad else 0


def cmd_calibrate(a) -> int:
    from tinyasc.evaluate.calibration import calibrate_run

    r = calibrate_run(a.run_dir, allow_sharpening=a.allow_sharpening, progress=not a.quiet)
    print(
        f"temperature {r['temperature']:.4f} fitted on the {r['fitted_on']}: validation log loss "
        f"{r['validation_logloss_before']:.3f} -> {r['validation_logloss_after']:.3f}"
    )
    print(f"stored in {Path(a.run_dir) / 'calibration.json'}; tinyasc evaluate and predict now apply it")
    return 0


def cmd_submit(a) -> int:
    from tinyasc.evaluate.submission import write_submission

    path = write_submission(a.run_dir, a.eval_root, a.label, a.meta, a.out, workers=a.workers)
    print(f"submission package: {path} (passed the checker rules)")
    return 0


def cmd_check_submission(a) -> int:
    from tinyasc.data.index import load_tau
    from tinyasc.evaluate.submission import check_package

    index = load_tau(a.eval_root, check_audio=False)
    clips = index.split("test") if index.kind == "tau-evaluation" else index.split("evaluate")
    errors = check_package(Path(a.package).read_bytes(), [c.filename for c in clips])
    for e in errors:
        print(e)
    print("no errors found" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


def cmd_download(a) -> int:
    from tinyasc.data.download import SETS, ZENODO, DownloadError, download

    if a.set not in SETS:
        raise DownloadError(f"unknown set {a.set!r}; expected one of {', '.join(SETS)}")
    packages = SETS[a.set]
    if a.only:
        wanted = {f".{o}.zip" for o in a.only}
        packages = [p for p in packages if any(p.filename.endswith(w) for w in wanted)]
        if not packages:
            raise DownloadError(f"--only {a.only}: no such package in {a.set} (e.g. doc, meta, audio.1)")
    res = download(
        a.dest,
        a.set,
        a.base_url or ZENODO,
        a.parallel,
        keep_archives=not a.remove_archives,
        progress=not a.quiet,
        packages=packages,
        retries=a.retries,
    )
    done = sum(1 for v in res.values() if v == "complete")
    print(f"{a.dest}: {len(res)} package(s) ready ({done} already complete, {len(res) - done} extracted now)")
    return 0


def cmd_demo(a) -> int:
    from tinyasc.demo import run_demo

    return run_demo(Path(a.dir), quick=a.quick, workers=a.workers)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinyasc", description="Low-complexity acoustic scene classification (DCASE 2021 Task 1A)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", help="check a dataset and print counts per split, device and class")
    s.add_argument("root", help="TAU root (with evaluation_setup/), or the audio folder of a generic dataset")
    s.add_argument("--csv", help="generic dataset: filename<TAB>scene_label [fold] [device] [identifier]")
    s.add_argument("--json", action="store_true")
    s.add_argument(
        "--no-audio", action="store_true", help="skip the audio checks (inspect split files alone)"
    )
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("synth", help="write a synthetic corpus in the exact TAU 2020 Mobile layout")
    s.add_argument("out")
    g = s.add_mutually_exclusive_group()
    g.add_argument(
        "--per-class-device", type=int, default=None, help="files per (split, scene, device); default 20"
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
        "--evaluation", action="store_true", help="2021 evaluation-set layout (audio/<n>.wav, no labels)"
    )
    s.add_argument("--reference", help="--evaluation: where to write the labels (default OUT.reference.csv)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train a model from a YAML config plus key=value overrides")
    s.add_argument("config", help="YAML file (a diff against the defaults), e.g. configs/baseline.yaml")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=PATH train.epochs=20")
    s.add_argument("--run-dir", required=True)
    s.add_argument("--resume", action="store_true", help="continue an interrupted run in --run-dir")
    s.add_argument("--evaluate", action="store_true", help="evaluate on fold1_evaluate afterwards")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser(
        "teachers", help="train a teacher ensemble and store its logits on the training fold for distillation"
    )
    s.add_argument("configs", nargs="+", help="one YAML config per teacher (any registered model)")
    s.add_argument("--out", required=True, help="folder for the teacher runs, logits.npz and teachers.json")
    s.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for every teacher"
    )
    s.add_argument("--seeds", type=int, default=1, help="teachers per config, seeds 0..N-1 (default 1)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_teachers)

    s = sub.add_parser("evaluate", help="evaluate a run's shipped model on fold1_evaluate")
    s.add_argument("run_dir")
    s.add_argument("--json", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("score", help="score a DCASE-format output.csv against a reference CSV")
    s.add_argument("output")
    s.add_argument("reference", help="filename<TAB>scene_label [identifier source_label]")
    s.add_argument(
        "--classes", help="comma-separated class names of a generic dataset (default: the 10 TAU scenes)"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser(
        "compress",
        help="compress a trained run (float16, int8 PTQ/QAT, pruning, 1-bit) into a new run directory",
    )
    s.add_argument("run", help="the trained source run (read only)")
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
    s.add_argument("--set", dest="overrides", nargs="*", default=[], help="more key=value for the fine-tune")
    s.add_argument("--resume", action="store_true", help="continue an interrupted fine-tune")
    s.add_argument("--no-evaluate", action="store_true", help="skip the evaluation on fold1_evaluate")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_compress)

    s = sub.add_parser(
        "export", help="export a run to ONNX (log-mel in, probabilities out) with its contract"
    )
    s.add_argument("run", help="a trained run directory")
    s.add_argument("--format", default="onnx", choices=["onnx"])
    g = s.add_mutually_exclusive_group()
    g.add_argument("--float16", action="store_true", help="float16 weights and arithmetic")
    g.add_argument("--int8", action="store_true", help="onnxruntime static int8 (QDQ, per-channel)")
    s.add_argument("-o", "--out", help="the .onnx file (default: RUN/model[_float16|_int8].onnx)")
    s.add_argument("--check-clips", type=int, default=256, help="fold1_evaluate clips to check it on")
    s.add_argument("--calibration-clips", type=int, default=256, help="--int8: training clips to calibrate")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("size", help="DCASE 2021 size table of a run, a model file or a registered model")
    s.add_argument("target", help="run directory, model file, or model name (e.g. dcase2021_baseline)")
    s.add_argument(
        "--precision",
        choices=["float32", "float16", "float16-all", "float16-folded", "int8"],
        help="count the float model at this precision (default: the stored one; float16 for a name); "
        "int8 is the per-channel estimate of what int8 quantisation would store",
    )
    s.add_argument("--limit", type=int, default=None, help="limit in bytes (default 128000)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_size)

    s = sub.add_parser(
        "models", help="every registered model: parameters, bytes at float32/float16/int8, MACs, fit"
    )
    s.add_argument("names", nargs="*", help="only these models (default: all)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_models)

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
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("calibrate", help="fit temperature scaling on the validation split and store it")
    s.add_argument("run_dir")
    s.add_argument(
        "--allow-sharpening",
        action="store_true",
        help="let the fit choose T < 1 (unsafe under device shift; see tinyasc.evaluate.calibration)",
    )
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("submit", help="write the DCASE 2021 Task 1A submission package for an evaluation set")
    s.add_argument("run_dir")
    s.add_argument("eval_root", help="evaluation-set root (audio/<n>.wav, evaluation_setup/fold1_test.csv)")
    s.add_argument("--label", required=True, help="Lastname_Institute_task1a_N (N in 1-4)")
    s.add_argument(
        "--meta", required=True, help="YAML with submission: name, abbreviation, authors (and system:)"
    )
    s.add_argument("-o", "--out", default="submission", help="output folder (default ./submission)")
    s.add_argument("--workers", type=int, default=2)
    s.set_defaults(func=cmd_submit)

    s = sub.add_parser("check-submission", help="check a submission zip with the organisers' rules")
    s.add_argument("package")
    s.add_argument("eval_root")
    s.set_defaults(func=cmd_check_submission)

    s = sub.add_parser("download", help="download, verify (md5) and extract TAU 2020 Mobile packages")
    s.add_argument("dest", help="folder that will hold TAU-urban-acoustic-scenes-2020-mobile-*/")
    s.add_argument("--set", default="development", help="development (default) or evaluation-2020")
    s.add_argument("--parallel", type=int, default=2, help="packages fetched at once (default 2)")
    s.add_argument("--base-url", help="mirror URL template with {filename} (and optionally {record})")
    s.add_argument("--only", nargs="+", help="only these packages, e.g. doc meta audio.1")
    s.add_argument(
        "--retries", type=int, default=5, help="attempts after the first, with backoff (default 5)"
    )
    s.add_argument("--remove-archives", action="store_true", help="delete each zip after extracting it")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser(
        "demo", help="synthetic corpus -> baseline -> float16 -> evaluation, in minutes on a CPU"
    )
    s.add_argument("--dir", default="tinyasc_demo", help="working folder (default ./tinyasc_demo)")
    s.add_argument("--quick", action="store_true", help="about a minute: a tiny corpus and two epochs")
    s.add_argument("--workers", type=int, default=2)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from tinyasc.config import ConfigError
    from tinyasc.data.audio import AudioError
    from tinyasc.data.download import DownloadError
    from tinyasc.data.index import DataError
    from tinyasc.evaluate.submission import SubmissionError
    from tinyasc.train.checkpoint import CheckpointError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (SubmissionError, DownloadError) as e:
        print(f"tinyasc {args.command}: {e}", file=sys.stderr)
        return 2
    except (DataError, ConfigError, AudioError, CheckpointError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"tinyasc {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
