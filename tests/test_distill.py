"""Knowledge distillation: the KD loss by hand, stored logits joined by file name, teachers end to end."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import train_args
from tinyasc.cli import main
from tinyasc.config import ConfigError, load_config
from tinyasc.distill.logits import join_logits, load_logits, save_logits
from tinyasc.train.hooks import MeanTeacher
from tinyasc.train.objectives import distillation_loss, soft_targets
from tinyasc.train.recipe import BatchRecipe


def test_distillation_loss_hand_values():
    kl = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    assert distillation_loss(torch.zeros(1, 2), torch.tensor([[0.8, 0.2]]), 1.0).item() == pytest.approx(kl)
    # T = 2: the student's tempered distribution is softmax(0, ln 2) = (1/3, 2/3); times T^2
    s = torch.tensor([[0.0, math.log(4.0)]])
    kl2 = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    assert distillation_loss(s, torch.tensor([[0.5, 0.5]]), 2.0).item() == pytest.approx(4 * kl2)


def test_recipe_mixes_classification_and_kd_terms():
    cfg = load_config(None, ["train.kd_weight=0.25", "train.kd_temperature=3"])
    recipe = BatchRecipe(cfg.augment, cfg.train, 3).train()
    model = torch.nn.Flatten()  # logits = the input itself
    x = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    teacher = torch.randn(4, 3)
    loss, _ = recipe(model, x, y, teacher)
    expected = 0.75 * F.cross_entropy(x, y) + 0.25 * 9 * F.kl_div(
        F.log_softmax(x / 3, 1), F.softmax(teacher / 3, 1), reduction="batchmean"
    )
    torch.testing.assert_close(loss, expected)


def test_mean_teacher_is_an_exponential_moving_average():
    cfg = load_config(None, ["train.mean_teacher_weight=1.0", "train.mean_teacher_decay=0.9"])
    student = torch.nn.Linear(3, 2)
    recipe = BatchRecipe(cfg.augment, cfg.train, 2)
    hook = MeanTeacher(cfg.train.mean_teacher_decay)
    hook.attach(student, recipe, torch.device("cpu"))
    assert recipe.ema is hook.ema
    before = hook.ema.weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    hook.after_step(student)
    torch.testing.assert_close(hook.ema.weight, 0.9 * before + 0.1 * student.weight)
    assert not any(p.requires_grad for p in hook.ema.parameters())
    loss, _ = recipe.train()(student, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    assert torch.isfinite(loss)


def test_stored_logits_join_by_file_name(tmp_path):
    names = ["audio/a.wav", "audio/b.wav", "audio/c.wav"]
    logits = np.arange(6, dtype=np.float32).reshape(3, 2)
    save_logits(tmp_path, names, ("x", "y"), logits, {"teachers": []})
    assert load_logits(tmp_path)[0] == names
    np.testing.assert_array_equal(
        join_logits(tmp_path, ["audio/c.wav", "audio/a.wav", "audio/b.wav"], ("x", "y")), logits[[2, 0, 1]]
    )
    with pytest.raises(ConfigError, match=r"no teacher logits for 1 of 4 training clips, e.g. audio/d.wav"):
        join_logits(tmp_path, [*names, "audio/d.wav"], ("x", "y"))
    with pytest.raises(ConfigError, match=r"1 files that are not training clips .* audio/c.wav"):
        join_logits(tmp_path, names[:2], ("x", "y"))
    with pytest.raises(ConfigError, match="teacher classes"):
        join_logits(tmp_path, names, ("y", "x"))
    with pytest.raises(ConfigError, match="teacher logits not found"):
        join_logits(tmp_path / "nothing", names, ("x", "y"))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a teacher logits file"):
        load_logits(tmp_path / "bad.npz")


def test_teachers_then_student_through_the_cli(tiny_corpus, tmp_path, capsys):
    cache = tmp_path / "cache"
    common = [f"data.root={tiny_corpus}", f"data.cache_dir={cache}", "train.epochs=1", "train.select_after=0"]
    args = [
        "teachers",
        "configs/baseline.yaml",
        *common,
        "--out",
        str(tmp_path / "t"),
        "--seeds",
        "2",
        "--quiet",
    ]
    assert main(args) == 0
    record = json.loads((tmp_path / "t" / "teachers.json").read_text())
    assert len(record["teachers"]) == 2 and record["ensemble"] == "mean of logits"
    assert [t["config"]["train"]["seed"] for t in record["teachers"]] == [0, 1]
    names, classes, logits = load_logits(tmp_path / "t")
    assert len(names) == record["files"] == 60 and logits.shape == (60, 10)  # the whole training fold
    assert "next: tinyasc train" in capsys.readouterr().out

    extra = [f"train.kd_logits={tmp_path / 't'}", "train.kd_weight=0.9", "augment.mixup_alpha=0.3"]
    assert main(train_args(tiny_corpus, tmp_path / "s", cache, 1, extra)) == 0
    assert (tmp_path / "s" / "model_float16.pt").exists()
    # logits of a file that is not a training clip: a clear error, no run written
    save_logits(tmp_path / "t2", [*names, "audio/extra.wav"], classes, np.vstack([logits, logits[:1]]), {})
    bad = [f"train.kd_logits={tmp_path / 't2'}"]
    capsys.readouterr()
    assert main(train_args(tiny_corpus, tmp_path / "s2", cache, 1, bad)) != 0
    assert (
        "1 files that are not training clips of this dataset, e.g. audio/extra.wav" in capsys.readouterr().err
    )
    assert not (tmp_path / "s2" / "last.pt").exists()


def test_mean_teacher_run_resumes_identically(tiny_corpus, tmp_path):
    cache = tmp_path / "cache"
    extra = ["train.mean_teacher_weight=0.5", "train.mean_teacher_decay=0.9"]
    assert main(train_args(tiny_corpus, tmp_path / "a", cache, 2, extra)) == 0
    assert main(train_args(tiny_corpus, tmp_path / "b", cache, 1, extra)) == 0
    assert main([*train_args(tiny_corpus, tmp_path / "b", cache, 2, extra), "--resume"]) == 0

    def losses(run):
        return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_soft_targets_smoothing():
    t = soft_targets(torch.tensor([1]), 4, 0.2)
    torch.testing.assert_close(t, torch.tensor([[0.05, 0.85, 0.05, 0.05]]))
