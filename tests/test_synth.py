import numpy as np
import pytest
import soundfile as sf

from tinyasc.cli import main
from tinyasc.data.index import load_tau
from tinyasc.data.synth import SynthSpec, write_corpus, write_evaluation_corpus
from tinyasc.data.synth.corpus import real_split, select_files
from tinyasc.data.synth.devices import DEVICE_MODELS, apply_device
from tinyasc.data.synth.dsp import SR
from tinyasc.data.synth.scenes import render_scene
from tinyasc.data.tau import DEVICES


def test_audio_format_and_meta(tiny_corpus):
    info = sf.info(str(next((tiny_corpus / "audio").glob("*.wav"))))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (44100, 1, "PCM_24", 441000)
    meta = (tiny_corpus / "meta.csv").read_text().splitlines()
    assert meta[0] == "filename\tscene_label\tidentifier\tsource_label"
    name, scene, ident, dev = meta[1].split("\t")
    assert name.startswith(f"audio/{scene}-{ident}-") and name.endswith(f"-{dev}.wav")
    assert (tiny_corpus / "evaluation_setup/fold1_test.csv").read_text().startswith("filename\naudio/")


def test_subset_mirrors_the_real_split():
    real = {s: {c.filename for c in clips} for s, clips in real_split().items()}
    chosen = select_files(SynthSpec(per_class_device=3, seed=0))
    for c in chosen:
        assert c.filename in real[c.split]  # real names, cities, locations, segments, split
    train = [c for c in chosen if c.split == "train"]
    assert {c.device for c in train} == {"a", "b", "c", "s1", "s2", "s3"}
    keys = [f"{c.scene}-{c.city}-{c.location}-{c.segment}" for c in chosen]
    assert len(set(keys)) < len(keys) * 0.6  # parallel recordings kept: several devices per segment
    frac = select_files(SynthSpec(per_class_device=None, fraction=0.01, seed=0))
    assert 150 < len(frac) < 260


def test_deterministic_bytes(tmp_path):
    spec = SynthSpec(per_class_device=1, duration=1.0, seed=3)
    write_corpus(tmp_path / "x", spec)
    write_corpus(tmp_path / "y", spec, workers=2)
    files = sorted(p.name for p in (tmp_path / "x/audio").glob("*.wav"))
    assert len(files) == 150
    for name in files[:20]:
        assert (tmp_path / "x/audio" / name).read_bytes() == (tmp_path / "y/audio" / name).read_bytes()
    other = write_corpus(tmp_path / "z", SynthSpec(per_class_device=1, duration=1.0, seed=4))
    assert other["train"] == 60


def test_resume_refuses_other_settings(tmp_path):
    write_corpus(tmp_path / "x", SynthSpec(per_class_device=1, duration=0.5))
    assert write_corpus(tmp_path / "x", SynthSpec(per_class_device=1, duration=0.5))["written"] == 0
    with pytest.raises(ValueError, match="other settings"):
        write_corpus(tmp_path / "x", SynthSpec(per_class_device=1, duration=1.0))


def _log_spectrum(x):
    spec = np.abs(np.fft.rfft(x.reshape(-1, 4410) * np.hanning(4410), axis=1)) ** 2
    bands = np.array_split(spec.mean(axis=0)[20:2000], 40)
    return 10 * np.log10(np.array([b.mean() for b in bands]) + 1e-12)


def test_parallel_recordings_share_their_scene(tiny_corpus):
    ix = load_tau(tiny_corpus)
    groups = {}
    for c in ix.clips:
        groups.setdefault(f"{c.scene}-{c.city}-{c.location}-{c.segment}", []).append(c)
    a_s1 = next(g for g in groups.values() if {"a", "s1"} <= {c.device for c in g})
    a = next(c for c in a_s1 if c.device == "a")
    s1 = next(c for c in a_s1 if c.device == "s1")
    xa, _ = sf.read(ix.path(a))
    xs, _ = sf.read(ix.path(s1))
    other = next(
        c for c in ix.clips if c.device == "a" and c.scene == a.scene and c.identifier != a.identifier
    )
    xo, _ = sf.read(ix.path(other))

    def env(x):  # 100 ms level envelope
        return np.log(np.mean(x.reshape(-1, 4410) ** 2, axis=1) + 1e-10)

    same = np.corrcoef(env(xa), env(xs))[0, 1]
    diff = np.corrcoef(env(xa), env(xo))[0, 1]
    assert same > 0.5 and same > diff + 0.3


def test_each_device_changes_the_spectrum_differently():
    src = render_scene("street_traffic", "paris", "7", "70", 0, SR * 2)
    ref = _log_spectrum(apply_device(src, "a", "k", 0))
    curves = {}
    for d in DEVICES:
        if d == "a":
            continue
        diff = _log_spectrum(apply_device(src, d, "k", 0)) - ref
        diff -= diff.mean()  # level aside, the shape must change
        assert np.sqrt(np.mean(diff**2)) > 1.0, d
        curves[d] = diff
    names = sorted(curves)
    for i, d1 in enumerate(names):
        for d2 in names[i + 1 :]:
            assert np.sqrt(np.mean((curves[d1] - curves[d2]) ** 2)) > 1.0, (d1, d2)
    assert set(DEVICE_MODELS) == set(DEVICES)


def test_evaluation_layout_has_no_labels(tmp_path):
    out = tmp_path / "eval"
    res = write_evaluation_corpus(out, per_class_device=1, duration=0.5, seed=0, workers=2)
    assert res["test"] == 150  # 10 scenes x 15 devices
    names = sorted(p.name for p in (out / "audio").glob("*.wav"))
    assert names == sorted(f"{i}.wav" for i in range(150))
    listing = (out / "evaluation_setup/fold1_test.csv").read_text().splitlines()
    assert listing[0] == "filename" and len(listing) == 151
    assert not any("scene" in p.read_text() for p in out.rglob("*.csv"))
    ref = (tmp_path / "eval.reference.csv").read_text().splitlines()
    assert ref[0] == "filename\tscene_label\tidentifier\tsource_label"
    devices = {r.split("\t")[3] for r in ref[1:]}
    cities = {r.split("\t")[2].split("-")[0] for r in ref[1:]}
    assert {"d", "s7", "s11"} <= devices and cities & {"amsterdam", "madrid"}
    ix = load_tau(out)
    assert ix.kind == "tau-evaluation" and len(ix.split("test")) == 150
    assert ix.summary()["splits"]["test"]["files"] == 150


def test_synth_cli(tmp_path, capsys):
    assert (
        main(["synth", str(tmp_path / "c"), "--per-class-device", "1", "--duration", "0.5", "--quiet"]) == 0
    )
    assert "60 train + 90 evaluate" in capsys.readouterr().out
    assert main(["synth", str(tmp_path / "d"), "--fraction", "0", "--quiet"]) == 2
    assert main(["synth", str(tmp_path / "f"), "--fraction", "0.005", "--duration", "0.2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "100 train + 90 evaluate" in out  # 0.5% of each (split, scene, device), at least one file


def test_evaluate_fraction_keeps_the_a_dominated_training_part_and_a_large_test_split():
    spec = SynthSpec(per_class_device=None, fraction=0.02, evaluate_fraction=1.0, seed=0)
    chosen = select_files(spec)
    train = [c for c in chosen if c.split == "train"]
    evaluate = [c for c in chosen if c.split == "evaluate"]
    assert len(evaluate) == 2968  # the whole real evaluate split
    share_a = sum(c.device == "a" for c in train) / len(train)
    assert 0.6 < share_a < 0.8  # the real training part is 73% device A; the fraction keeps that
    assert select_files(SynthSpec(per_class_device=None, fraction=0.02, seed=0)) != chosen
    with pytest.raises(ValueError, match="evaluate_fraction"):
        SynthSpec(per_class_device=None, fraction=0.1, evaluate_fraction=0)


def test_evaluation_layout_defaults_to_the_real_7920_file_list():
    from collections import Counter

    from tinyasc.data.synth.corpus import evaluation_items

    items = evaluation_items(None, seed=0)
    assert len(items) == len(set(items)) == 7920  # audio/0.wav ... audio/7919.wav, as the validator checks
    per_combo = Counter((scene, dev) for scene, _, _, _, dev in items)
    assert len(per_combo) == 150 and set(per_combo.values()) == {52, 53}
    assert len(evaluation_items(53, seed=0)) == 7950  # a named smaller (or larger) list is exact too
