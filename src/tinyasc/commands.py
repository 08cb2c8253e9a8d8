"""What each subcommand does: one function per command, each calling the library (``cli.py`` parses).

``run(args)`` dispatches a parsed command line and turns the library's errors about bad input into one
line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch

from tinyasc import artifact
from tinyasc.compress.complexity import parameter_bytes, verdict
from tinyasc.compress.macs import count_macs
from tinyasc.compress.memory import activation_memory
from tinyasc.compress.size import LIMIT_BYTES, head_note, model_size, storage_tensors
from tinyasc.config import ConfigError, FrontendConfig, load_config
from tinyasc.data.audio import AudioError
from tinyasc.data.download import SETS, ZENODO, DownloadError, download
from tinyasc.data.index import DataError, load_generic, load_tau, validation_split
from tinyasc.data.synth import SynthSpec, write_corpus, write_evaluation_corpus
from tinyasc.data.tau import evaluation_2021_files
from tinyasc.data.tau2022 import SUBSETS, cut_2022, subset_path, write_subsets
from tinyasc.engine import compute_threads
from tinyasc.evaluate.calibration import calibrate_run
from tinyasc.evaluate.compare import compare_rows, format_rows, size_accuracy_png
from tinyasc.evaluate.infer import collect_inputs, format_csv, format_jsonl, predict_files
from tinyasc.evaluate.predict import load_model
from tinyasc.evaluate.run import evaluate_run, score
from tinyasc.evaluate.stream import file_blocks, mic_blocks, pcm_blocks, stream_predict
from tinyasc.evaluate.submission import SubmissionError, check_package, write_submission
from tinyasc.export import check_onnxruntime, export_c, export_onnx
from tinyasc.io import CheckpointError, atomic_write_text
from tinyasc.models import create_model, get_model_info
from tinyasc.rules import get_rules
from tinyasc.rundir import RunDir, temperature_of
from tinyasc.train.run import fit
from tinyasc.workflows.compress import CompressOptions, compress_run
from tinyasc.workflows.crossval import crossval, format_summary
from tinyasc.workflows.demo import run_demo
from tinyasc.workflows.device_heads import device_heads
from tinyasc.workflows.ensemble import make_ensemble
from tinyasc.workflows.teachers import train_teachers
from tinyasc.zoo import fit_width, format_rules_table, format_table, model_table, rules_rows


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
    if a.csv:
        index = load_generic(a.csv, a.root, check_audio=not a.no_audio)
    else:
        index = load_tau(a.root, check_audio=not a.no_audio)
    summary = index.summary()
    if a.json:
        train = index.split("train")
        if train:  # the baseline's validation part of the training split, to compare with dcase_util's
            _, val = validation_split(train, a.validation_fraction, a.validation_seed)
            summary["validation"] = {
                "fraction": a.validation_fraction,
                "seed": a.validation_seed,
                "files": [c.filename for c in val],
            }
        print(json.dumps(summary, indent=2))
    else:
        _print_index(summary)
    return 0


def cmd_synth(a) -> int:
    if a.evaluation:
        res = write_evaluation_corpus(
            a.out,
            a.per_class_device,  # None: the real set's 7,920 files
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
    if a.layout == "tau2022":  # the 2020 corpus in a staging folder, cut as the organisers cut theirs
        staging = Path(a.out) / ".tau2020"
        write_corpus(staging, spec, workers=a.workers, progress=not a.quiet)
        rec = cut_2022(staging, a.out, workers=a.workers, progress=not a.quiet)
        shutil.rmtree(staging)
        print(f"{a.out}: {rec['train']} train + {rec['evaluate']} evaluate 1-s files (2022 layout)")
        return 0
    res = write_corpus(a.out, spec, workers=a.workers, progress=not a.quiet)
    print(
        f"{a.out}: {res['train']} train + {res['evaluate']} evaluate files from {res['segments']} segments "
        f"({res['written']} written now)"
    )
    return 0


def cmd_tau2022(a) -> int:
    rec = cut_2022(a.source, a.out, workers=a.workers, progress=not a.quiet)
    print(
        f"{a.out}: {rec['snippets']:,} 1-s files from {rec['source_files']:,} ({rec['train']:,} train, "
        f"{rec['evaluate']:,} evaluate)"
    )
    return 0


def cmd_subsets(a) -> int:
    sizes = write_subsets(a.root, tuple(a.percent or SUBSETS), a.seed)
    total = sizes.get(100) or max(sizes.values())
    for p, n in sizes.items():
        print(f"{subset_path(a.root, p)}: {n:,} files ({100 * n / total:.1f}% of {total:,})")
    return 0


def cmd_train(a) -> int:
    cfg = load_config(a.config, a.overrides)
    res = fit(cfg, a.run_dir, resume=a.resume, progress=not a.quiet)
    best = res["best"]
    if best["val_accuracy"] is None:
        chosen = "the last epoch, no validation part"
    elif cfg.train.select_metric == "logloss":
        chosen = f"lowest val log loss {best['val_loss']:.3f}, val accuracy {best['val_accuracy']:.3f}"
    else:
        chosen = f"val accuracy {best['val_accuracy']:.3f}"
    print(
        f"trained {cfg.model.name}: selected epoch {res['best']['epoch']} ({chosen}); shipped {res['shipped']} in {a.run_dir}"
    )
    if cfg.rules != "dcase2021":
        print_verdict(RunDir(a.run_dir).size())
    if a.evaluate:
        return cmd_evaluate(argparse.Namespace(run_dir=a.run_dir, json=False, quiet=a.quiet))
    print(f"next: tinyasc evaluate {a.run_dir}")
    return 0


def cmd_ensemble(a) -> int:
    rec = make_ensemble(a.runs, a.out, evaluate=not a.no_evaluate, progress=not a.quiet)
    size = rec["size"]
    print(
        f"{a.out}: {len(rec['members'])} members, {size['nonzero_bytes']:,} bytes of non-zero parameters in all"
    )
    if "evaluation" in rec:
        ev = rec["evaluation"]
        print(f"evaluate split: accuracy {100 * ev['accuracy']:.1f}%, log loss {ev['logloss']:.3f}")
    return print_verdict(size)


def cmd_crossval(a) -> int:
    if a.teacher_seeds < 1:
        raise ConfigError(f"crossval --teacher-seeds: {a.teacher_seeds}; expected 1 or more")
    # The teachers share the student's dataset: they take its data.* overrides and the clip length.
    shared = [o for o in a.overrides if o.startswith(("data.", "frontend.duration="))]
    teachers = [
        load_config(spec, [*shared, f"train.seed={seed}"])
        for spec in a.teachers or []
        for seed in range(a.teacher_seeds)
    ]
    summary = crossval(
        load_config(a.config, a.overrides), a.out, a.folds, progress=not a.quiet, teachers=teachers
    )
    print(format_summary(summary))
    print(f"runs and crossval.json in {a.out}")
    return 0


def cmd_teachers(a) -> int:
    overrides = [item for item in a.configs if "=" in item]  # as train: dotted key=value
    files = [item for item in a.configs if "=" not in item]
    configs = []
    for spec in files:
        if not spec.endswith((".yaml", ".yml")):
            raise ConfigError(f"{spec}: expected a YAML config (.yaml) or a key=value override")
        for seed in range(a.seeds):
            configs.append(
                load_config(spec, [*overrides, f"train.seed={seed}"] if a.seeds > 1 else overrides)
            )
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
        print(f"report: {RunDir(a.run_dir).report_paths['report']}")
    return 0


def cmd_compare(a) -> int:
    rows = compare_rows(a.runs)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_rows(rows))
    if a.plot:
        size_accuracy_png(rows, a.plot)
        print(f"size against accuracy: {a.plot}")
    return 0


def cmd_score(a) -> int:
    m = score(a.output, a.reference, tuple(a.classes.split(",")) if a.classes else None)
    if a.json:
        print(json.dumps(m, indent=2))
    else:
        print(_overall_line(m))
        for d, s in m["device_wise"].items():
            print(f"  {d:4s} accuracy {100 * s['accuracy']:.1f}%  log loss {s['logloss']:.3f}")
    return 0


def cmd_compress(a) -> int:
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
        rules=a.rules,
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
        print(f"evaluate split: accuracy {100 * ev['accuracy']:.1f}%, log loss {ev['logloss']:.3f}")
    return print_verdict(size)


def print_verdict(size: dict) -> int:
    """The PASS / FAIL line of a run's size.json under its rules; the exit status it means."""
    if "rules" in size:
        v = size["rules"]
        why = "" if v["passes"] else ": " + "; ".join(v["reasons"])
        print(
            f"{'PASS' if v['passes'] else 'FAIL'} {v['rules']}: {v['counted']:,} {v['unit']} (limit {v['limit']:,}), "
            f"{v['macs_per_second']:,} MACs per second (limit {v['macs_limit'] or 0:,}){why}"
        )
        return 0 if v["passes"] else 1
    print(f"{'PASS' if size['fits'] else 'FAIL'}: limit {size['limit_bytes']:,} bytes")
    return 0 if size["fits"] else 1


def cmd_device_heads(a) -> int:
    if a.epochs < 1 or a.lr <= 0:
        raise ConfigError(f"--epochs {a.epochs} --lr {a.lr}: need at least one epoch and a positive rate")
    rec = device_heads(
        a.run,
        a.out,
        a.devices,
        a.epochs,
        a.lr,
        evaluate=not a.no_evaluate,
        progress=not a.quiet,
        head=a.head,
        rules=a.rules,
    )
    print(
        f"{a.out}: heads for {', '.join(rec['devices'])} ({', '.join(rec['layers'])}, {rec['head_params']:,} "
        f"parameters each) on the shared {Path(a.run).name}"
    )
    if "evaluation" in rec:
        ev = rec["evaluation"]
        line = f"evaluate split with device heads: accuracy {100 * ev['accuracy']:.1f}%, log loss {ev['logloss']:.3f}"
        if "source_evaluation" in rec:
            base = rec["source_evaluation"]
            line += f" (shared model: {100 * base['accuracy']:.1f}%, {base['logloss']:.3f})"
        print(line)
    return print_verdict(RunDir(a.out).size())


def cmd_export(a) -> int:
    if a.format == "c":
        out = a.out or str(RunDir(a.run).c_header_path)
        rec = export_c(a.run, out)
        print(
            f"{out}: {len(rec['arrays'])} arrays, {rec['bytes']:,} bytes of {rec['storage']} tensors; contract {out}.json"
        )
        return 0
    check_onnxruntime()
    precision = "int8" if a.int8 else "float16" if a.float16 else "float32"
    out = a.out or str(RunDir(a.run).onnx_path(precision))
    c = export_onnx(a.run, out, precision, a.check_clips, a.calibration_clips)
    k = c["check"]
    print(
        f"{out}: {precision} ONNX, {c['bytes_on_disk']:,} bytes on disk; contract {out}.json\n"
        f"onnxruntime vs {k['reference']} on {k['clips']} clips of the evaluate split: max probability difference "
        f"{k['max_abs_probability_difference']:.2e}, same decisions {100 * k['same_decisions']:.1f}%"
    )
    return 0


def cmd_size(a) -> int:
    target = Path(a.target)
    if a.fit_bytes and target.exists():
        raise ConfigError("--fit-bytes: give a registered model name (a trained model's widths are fixed)")
    if target.exists():
        path = target
        if target.is_dir():
            run = RunDir(target)
            path = run.float_model_path if a.precision else run.shipped_model_path
        art = artifact.load(path)
        model = artifact.build_float_model(art)
        if a.precision:  # what the float model would store at another precision
            if not artifact.storage_of(art).is_float:
                raise CheckpointError(
                    f"{path}: stored as {art['storage']}; --precision re-counts a float model "
                    "(drop --precision to count what it stores)"
                )
            model = artifact.load_stored(art)
            report = model_size(model, a.precision)
        else:
            report = artifact.size_report(art)
    else:
        get_model_info(a.target)
        if a.classes < 1:
            raise ConfigError(f"--classes {a.classes}: need at least one class")
        params = {}
        if a.fit_bytes:  # the widths for this many classes that store at most --fit-bytes
            params, _ = fit_width(a.target, a.classes, a.fit_bytes, a.precision)
            print(f"model.params={json.dumps(params)} fits {a.fit_bytes:,} bytes for {a.classes} classes")
        model = create_model(a.target, n_classes=a.classes, **params)
        report = model_size(
            model, a.precision or ("float16" if not a.fit_bytes else get_model_info(a.target).ships_as)
        ).dense("a registered model before training: every value counted (the figure of tinyasc models)")
    report.limit = a.limit or LIMIT_BYTES
    if a.rules:
        if target.exists():
            v = artifact.rules_verdict(art, a.rules, None if a.precision else report)
        else:
            frontend = FrontendConfig(**get_model_info(a.target).frontend)
            stored = parameter_bytes(storage_tensors(model, a.precision or get_model_info(a.target).ships_as))
            v = verdict(get_rules(a.rules), model, frontend.duration, stored, report.nonzero_bytes)
        print(json.dumps(v.to_dict(), indent=2) if a.json else v.table())
        return 0 if v.passes else 1
    n_classes = a.classes if not target.exists() else len(art["classes"])
    note = head_note(model, report, n_classes)
    if note:
        report.notes.append(note)
    macs = count_macs(model).total
    memory = activation_memory(model)
    if a.json:
        print(json.dumps({**report.to_dict(), "macs": macs, **memory.to_dict()}, indent=2))
    else:
        print(report.table())
        print(f"MACs for one clip ({model.n_mels} x {model.frames}): {macs:,} (conv + linear layers)")
        print(
            f"peak activation memory of one clip: {memory.peak_bytes:,} bytes at float32 (at {memory.peak_at}; "
            f"the input {memory.input_bytes:,})"
        )
    return 0 if report.fits else 1


def cmd_models(a) -> int:
    if a.rules:
        rows = rules_rows(a.rules, a.names or None)
        print(json.dumps(rows, indent=2) if a.json else format_rules_table(rows))
        return 0
    rows = model_table(a.names or None)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0


def cmd_predict(a) -> int:
    threads = compute_threads(workers=a.workers if a.workers > 1 else 0)
    torch.set_num_threads(threads)  # the model's threads and the decoding workers share the cores
    lm = load_model(a.model, a.runtime)
    runtime = "onnxruntime" if "onnxruntime" in lm.storage or lm.storage.startswith("onnx") else "PyTorch"
    print(
        f"predict: {a.workers} decoding worker(s), the model on {threads} thread(s) in {runtime}",
        file=sys.stderr,
    )
    temperature = 1.0 if a.no_calibration else temperature_of(a.model)
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


def cmd_stream(a) -> int:
    lm = load_model(a.model, a.runtime)
    if a.input == "-":
        blocks = pcm_blocks(sys.stdin.buffer, a.rate, a.channels, a.block)
    elif a.input == "mic":
        blocks = mic_blocks(a.rate, a.channels, a.block)
    else:
        blocks = file_blocks(a.input, a.block, realtime=a.realtime)
    out = open(a.output, "w") if a.output else sys.stdout  # noqa: SIM115 (closed below)
    try:
        _, stats = stream_predict(lm, blocks, a.hop, a.window, a.smooth, temperature_of(a.model), out)
    finally:
        if a.output:
            out.close()
    if stats.hops:
        ms = sorted(1000 * s for s in stats.hop_seconds)
        print(
            f"stream: {stats.hops} hop(s) over {stats.audio_seconds:.1f} s of audio; per hop median "
            f"{ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms; real-time factor {stats.real_time_factor:.4f}",
            file=sys.stderr,
        )
    else:
        print(
            f"stream: {stats.audio_seconds:.1f} s of audio, less than one window: no prediction",
            file=sys.stderr,
        )
    return 0


def cmd_calibrate(a) -> int:
    r = calibrate_run(a.run_dir, allow_sharpening=a.allow_sharpening, progress=not a.quiet)
    print(
        f"temperature {r['temperature']:.4f} fitted on the {r['fitted_on']}: validation log loss "
        f"{r['validation_logloss_before']:.3f} -> {r['validation_logloss_after']:.3f}"
    )
    if r["at_upper_bound"]:
        print(
            f"warning: T reached its upper bound {r['bounds'][1]:g}: on the validation split the model is "
            "no better than uniform probabilities (train longer, or check the data); T was kept there"
        )
    print(f"stored in {RunDir(a.run_dir) / RunDir.CALIBRATION}; tinyasc evaluate and predict now apply it")
    return 0


def cmd_submit(a) -> int:
    path = write_submission(
        a.run_dir, a.eval_root, a.label, a.meta, a.out, workers=a.workers, report=a.report
    )
    print(f"submission package: {path} (passed the organisers' rules and tinyasc's stricter ones)")
    if a.report is None:
        print(
            "note: the instructions require a technical report (PDF) in the package; add it with --report FILE.pdf"
        )
    return 0


def cmd_check_submission(a) -> int:
    if a.eval_root:
        index = load_tau(a.eval_root, check_audio=False)
        clips = index.split("test") if index.kind == "tau-evaluation" else index.split("evaluate")
        expected = [c.filename for c in clips]
    else:  # the real 2021 evaluation set, as the organisers' validator checks it
        expected = evaluation_2021_files()
    package = Path(a.package)
    if not package.is_file():
        raise SubmissionError(f"{package}: package not found")
    found = check_package(package.read_bytes(), expected)
    for e in found.errors:
        print(f"error: {e}")
    for w in found.warnings:
        print(f"warning (tinyasc's stricter rule; the organisers' validator accepts it): {w}")
    print(
        f"{len(found.errors)} error(s) the organisers' validator rejects, {len(found.warnings)} warning(s)"
        if found.errors or found.warnings
        else "no errors found"
    )
    return 1 if found.errors else 0


def cmd_download(a) -> int:
    if a.dataset not in SETS:
        raise DownloadError(f"--dataset {a.dataset!r}: expected one of {', '.join(SETS)}")
    packages = SETS[a.dataset]
    if a.only:
        wanted = {f".{o}.zip" for o in a.only}
        packages = [p for p in packages if any(p.filename.endswith(w) for w in wanted)]
        if not packages:
            raise DownloadError(f"--only {a.only}: no such package in {a.dataset} (e.g. doc, meta, audio.1)")
    res = download(
        a.dest,
        a.dataset,
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
    return run_demo(Path(a.dir), quick=a.quick, workers=a.workers)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command ``args.command``; bad input ends in one line on stderr and exit code 2, a
    failure of the system (no space left, permission denied, a read-only file system) in one line
    naming the path and exit code 1."""
    try:
        return COMMANDS[args.command](args)
    except (SubmissionError, DownloadError) as e:
        print(f"tinyasc {args.command}: {e}", file=sys.stderr)
        return 2
    except (DataError, ConfigError, AudioError, CheckpointError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"tinyasc {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:
        where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
        reason = e.strerror or str(e)
        print(f"tinyasc {args.command}: error: {where + ': ' if where else ''}{reason}", file=sys.stderr)
        return 1


COMMANDS = {
    "index": cmd_index,
    "synth": cmd_synth,
    "tau2022": cmd_tau2022,
    "device-heads": cmd_device_heads,
    "subsets": cmd_subsets,
    "train": cmd_train,
    "teachers": cmd_teachers,
    "crossval": cmd_crossval,
    "ensemble": cmd_ensemble,
    "evaluate": cmd_evaluate,
    "score": cmd_score,
    "compare": cmd_compare,
    "compress": cmd_compress,
    "export": cmd_export,
    "size": cmd_size,
    "models": cmd_models,
    "predict": cmd_predict,
    "calibrate": cmd_calibrate,
    "stream": cmd_stream,
    "submit": cmd_submit,
    "check-submission": cmd_check_submission,
    "download": cmd_download,
    "demo": cmd_demo,
}
