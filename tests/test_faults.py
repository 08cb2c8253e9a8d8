"""Faults answered cleanly: workers die with their parent, runs are locked, OS errors are one line.

Each test recreates one fault of the fault list (issue: every fault handled) and checks the clear
error, the exit code, that nothing half-written is read later, and that no process outlives its parent.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by its new parent) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_pool_workers_die_with_their_parent(tmp_path, how):
    script = textwrap.dedent(
        """
        import os, sys, time
        from tinyasc.procs import worker_pool

        def pid_then_sleep(_):
            time.sleep(60)

        pool = worker_pool(2)
        futures = [pool.submit(pid_then_sleep, i) for i in range(2)]
        time.sleep(1.0)
        print(" ".join(str(p) for p in pool._processes), flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(p) for p in workers)
    parent.send_signal(how)
    parent.wait(timeout=10)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


# --- run directories ---------------------------------------------------------------------------------


def test_a_second_writer_of_a_run_is_refused_naming_the_first(tiny_corpus, tmp_path, capsys):
    from tests.conftest import train_args
    from tinyasc.cli import main
    from tinyasc.rundir import RunDir

    run = RunDir(tmp_path / "run")
    with run.lock("tinyasc train"):
        assert main(train_args(tiny_corpus, run.path, tmp_path / "cache", 1)) == 2
    err = capsys.readouterr().err
    assert f"tinyasc train (pid {os.getpid()}) is writing this run" in err
    assert not (run.path / "metrics.jsonl").exists()  # the refused writer wrote nothing


def test_interrupted_writes_are_cleaned_and_a_torn_metrics_line_resumes(run_copy, tiny_corpus, capsys):
    import json

    from tests.conftest import train_args
    from tinyasc.cli import main

    run, tmp = run_copy
    (run / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')  # a crash in the middle of the line
    assert main([*train_args(tiny_corpus, run, tmp / "cache", 3), "--resume"]) == 0
    assert not list(run.glob(".*.tmp"))
    epochs = [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]


def test_resume_with_another_config_names_the_key(run_copy, tiny_corpus, capsys):
    from tests.conftest import train_args
    from tinyasc.cli import main

    run, tmp = run_copy
    args = [*train_args(tiny_corpus, run, tmp / "cache", 3, ["train.lr=0.01"]), "--resume"]
    assert main(args) == 2
    assert "train.lr: 0.001 then, 0.01 now" in capsys.readouterr().err


def test_files_are_written_with_the_umask_not_owner_only(tmp_path):
    from tinyasc.io import atomic_torch_save, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_torch_save({"x": 1}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert oct((tmp_path / "a.txt").stat().st_mode & 0o777) == oct(0o644)
    assert oct((tmp_path / "b.pt").stat().st_mode & 0o777) == oct(0o644)


def test_a_run_made_with_a_relative_root_is_read_from_anywhere(tiny_corpus, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    import yaml

    from tests.conftest import train_args
    from tinyasc.cli import main

    config = str(Path(__file__).resolve().parents[1] / "configs" / "baseline.yaml")
    monkeypatch.chdir(tiny_corpus.parent)
    args = train_args(tiny_corpus.name, tmp_path / "run", tmp_path / "cache", 1)
    args[1] = config
    assert main(args) == 0
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["data"]["root"] == str(tiny_corpus)
    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "run"]) == 0


def test_compress_that_fails_before_training_leaves_no_partial(run_copy, capsys):
    from tinyasc.cli import main

    run, tmp = run_copy
    out = tmp / "c"
    bad = [
        "compress",
        str(run),
        "--method",
        "int8-qat",
        "--out",
        str(out),
        "--epochs",
        "1",
        "train.batch_size=0",
    ]
    assert main(bad) == 2
    assert "train.batch_size=0" in capsys.readouterr().err
    assert not out.exists() and not (tmp / "c.partial").exists()


# --- the system fails: one line naming the path ------------------------------------------------------


def test_an_os_error_is_one_line_naming_the_path(tmp_path, capsys):
    from tinyasc.cli import main

    (tmp_path / "a_file").write_text("")  # a file where a folder should be
    assert main(["synth", str(tmp_path / "a_file" / "corpus"), "--per-class-device", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a_file" in err[0] and "Not a directory" in err[0], err


def test_a_full_disk_while_caching_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import numpy as np

    from tinyasc.data import cache

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space left"):
        cache._cached_array("k", (4, 40, 500), lambda out: out.fill(0), {}, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind
    monkeypatch.undo()
    got = cache._cached_array("k", (2, 3), lambda out: out.fill(1), {}, tmp_path)
    assert np.all(got == 1)


def test_a_stale_cache_temporary_of_a_dead_process_is_removed(tmp_path):
    from tinyasc.data import cache

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".k.{int(dead.stdout)}.npy.tmp"
    stale.write_bytes(b"x" * 100)
    cache._cached_array("k", (2, 3), lambda out: out.fill(1), {}, tmp_path)
    assert not stale.exists()


# --- bad input ---------------------------------------------------------------------------------------


def test_bad_audio_is_named(tmp_path, monkeypatch):
    import numpy as np
    import soundfile as sf

    from tinyasc.data import audio
    from tinyasc.data.audio import AudioError, read_audio

    sf.write(tmp_path / "t.wav", np.full(4410, 0.1, dtype=np.float32), 44100, subtype="PCM_16")
    data = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "trunc.wav").write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match="trunc.wav: truncated: its header declares 4410 samples"):
        read_audio(tmp_path / "trunc.wav")
    monkeypatch.setattr(audio.os, "access", lambda p, m: False)
    with pytest.raises(AudioError, match="t.wav: permission denied"):
        read_audio(tmp_path / "t.wav")


def test_predict_reports_broken_links_and_truncated_files(trained_run, tmp_path, capsys):
    import json

    import numpy as np
    import soundfile as sf

    from tinyasc.cli import main

    run, _ = trained_run
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "good.wav", np.random.default_rng(0).normal(0, 0.1, 44100 * 3), 44100)
    data = (folder / "good.wav").read_bytes()
    (folder / "cut.wav").write_bytes(data[: len(data) // 2])
    (folder / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    (folder / "loop.wav").symlink_to(folder / "loop.wav")
    out = tmp_path / "o.jsonl"
    assert main(["predict", str(run), str(folder), "-o", str(out), "--workers", "1"]) == 1
    rows = {json.loads(ln)["filename"].split("/")[-1]: json.loads(ln) for ln in out.read_text().splitlines()}
    assert "probabilities" in rows["good.wav"]
    assert rows["cut.wav"]["error"].startswith("truncated")
    assert "broken or looping link" in rows["dangling.wav"]["error"]
    assert "broken or looping link" in rows["loop.wav"]["error"]


def test_bad_config_input_is_one_line(tmp_path, capsys):
    from tinyasc.cli import main

    (tmp_path / "latin1.yaml").write_bytes("train:\n  # caf\xe9\n  epochs: 2\n".encode("latin-1"))
    for argv, needle in (
        (
            ["train", "configs/baseline.yaml", "model.params={bad", "--run-dir", str(tmp_path / "r")],
            "override model.params: '{bad' is not a YAML value",
        ),
        (
            ["train", str(tmp_path / "latin1.yaml"), "--run-dir", str(tmp_path / "r")],
            "latin1.yaml: not UTF-8",
        ),
        (
            ["train", "configs/baseline.yaml", "data.classes=[a, a]", "--run-dir", str(tmp_path / "r")],
            "data.classes: a given more than once",
        ),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


def test_bad_csv_rows_are_named(tmp_path):
    from tinyasc.data.index import DataError, load_generic, load_tau

    setup = tmp_path / "evaluation_setup"
    setup.mkdir()
    (setup / "fold1_train.csv").write_bytes(
        "\ufefffilename\tscene_label\naudio/airport-lisbon-1-1-a.wav\tairport\n".encode()
    )
    (setup / "fold1_evaluate.csv").write_text("filename\tscene_label\naudio/bus-lisbon-2-1-a.wav\tbus\n")
    assert len(load_tau(tmp_path, check_audio=False).clips) == 2  # a byte-order mark is accepted
    (setup / "fold1_train.csv").write_text(
        "filename\tscene_label\naudio/airport-lisbon-1-1-a.wav\tairport\textra\n"
    )
    with pytest.raises(DataError, match=r"fold1_train.csv:2: .*3 tab-separated fields, expected 2"):
        load_tau(tmp_path, check_audio=False)
    g = tmp_path / "g.csv"
    for rows, needle in (
        ("a.wav\tx\nb.wav\t\n", "g.csv:3: b.wav: empty scene label"),
        ("a.wav\tx\n\ty\n", "g.csv:3: empty file name"),
    ):
        g.write_text("filename\tscene_label\n" + rows)
        with pytest.raises(DataError, match=needle):
            load_generic(g, tmp_path, check_audio=False)


def test_a_symlink_in_a_download_zip_is_refused(tmp_path):
    import zipfile

    from tinyasc.data.download import DownloadError, Package, extract

    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as z:
        link = zipfile.ZipInfo("root/audio")
        link.external_attr = 0o120777 << 16  # a symbolic link, as zip tools store one
        z.writestr(link, "/etc")
        z.writestr("root/audio/x.wav", b"RIFF")
    with pytest.raises(DownloadError, match="'root/audio' is a symbolic link; refused"):
        extract(archive, tmp_path / "dest", Package("p.zip", "0" * 32, 0))
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").rglob("*.wav"))


# --- slow: real faults -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                with open(f"/proc/{stat}/stat") as f:
                    if int(f.read().split(")")[-1].split()[1]) == pid:
                        out.append(int(stat))
            except (FileNotFoundError, ProcessLookupError):
                continue
    return out


@pytest.mark.slow
def test_killed_synth_leaves_no_worker_and_no_writer(tmp_path):
    out = tmp_path / "corpus"
    cmd = [
        sys.executable,
        "-m",
        "tinyasc.cli",
        "synth",
        str(out),
        "--per-class-device",
        "3",
        "--workers",
        "2",
        "--quiet",
    ]
    parent = subprocess.Popen(cmd)
    deadline = time.time() + 120
    while (
        time.time() < deadline
        and len(list((out / "audio").glob("*.wav")) if (out / "audio").exists() else []) < 5
    ):
        time.sleep(0.2)
    workers = _children(parent.pid)
    assert workers, "synth started no workers"
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)
    written = len(list((out / "audio").glob("*.wav")))
    time.sleep(2)
    assert len(list((out / "audio").glob("*.wav"))) == written  # nobody writes after the parent died


@pytest.mark.slow
def test_a_full_disk_under_the_feature_cache_is_one_line(tiny_corpus, tmp_path, capsys):
    from tests.conftest import train_args
    from tinyasc.cli import main

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True
    ).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        assert main(train_args(tiny_corpus, tmp_path / "run", small, 1)) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "No space left on device" in err[0], err
        assert not list(small.glob(".*.tmp"))  # nothing half-written stays
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_training_audio_with_nan_is_named_and_silence_is_warned(tmp_path, caplog):
    import logging

    import numpy as np
    import soundfile as sf

    from tinyasc.data.audio import AudioError, load_clip

    nan = np.full(4410, 0.1, dtype=np.float32)
    nan[7] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio holds NaN or infinite samples"):
        load_clip(tmp_path / "nan.wav", 44100, 44100)
    sf.write(tmp_path / "zero.wav", np.zeros(4410, dtype=np.float32), 44100)
    with caplog.at_level(logging.WARNING):
        load_clip(tmp_path / "zero.wav", 44100, 44100)
    assert "zero.wav: silent (every sample is zero); used as it is" in caplog.text
