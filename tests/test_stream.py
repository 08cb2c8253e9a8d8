"""tinyasc stream: a stream's windows are offline prediction's windows."""

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tinyasc.evaluate.infer import predict_files
from tinyasc.evaluate.predict import load_model
from tinyasc.evaluate.stream import file_blocks, pcm_blocks, stream_predict


def _recording(path, seconds=25):
    x = np.random.default_rng(3).normal(0, 0.1, 44100 * seconds).astype(np.float32)
    sf.write(path, x, 44100, subtype="FLOAT")
    return x


def test_streamed_windows_equal_offline_windows(trained_run, tmp_path):
    run, _ = trained_run
    lm = load_model(run)
    _recording(tmp_path / "rec.wav")
    results, stats = stream_predict(lm, file_blocks(tmp_path / "rec.wav", 3000), hop_s=5.0, out=io.StringIO())
    assert [round(t, 3) for t, _, _ in results] == [10.0, 15.0, 20.0, 25.0]
    (offline,) = predict_files(lm, [tmp_path / "rec.wav"], window_s=10.0, hop_s=5.0, workers=1)
    full = [p for s, e, p in offline.windows if e - s == 10.0]  # the whole windows
    assert len(full) == 4
    for (_, p, _), q in zip(results, full, strict=True):
        np.testing.assert_allclose(p, q, atol=1e-6)
    assert stats.hops == 4 and stats.audio_seconds == 25.0 and 0 < stats.real_time_factor < 1


def test_smoothing_and_piped_pcm(trained_run, tmp_path):
    run, _ = trained_run
    lm = load_model(run)
    x = _recording(tmp_path / "rec.wav", 12)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    out = io.StringIO()
    results, _ = stream_predict(lm, pcm_blocks(io.BytesIO(pcm), 44100, 1, 1000), 1.0, smooth=0.5, out=out)
    assert len(results) == 3  # windows ending at 10, 11, 12 s
    (_, p0, s0), (_, p1, s1) = results[:2]
    np.testing.assert_allclose(s1, 0.5 * p1 + 0.5 * s0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("end_s\tscene_label") and lines[1].startswith("10.000\t")


def test_stream_cli_on_stdin(trained_run, tmp_path):
    run, _ = trained_run
    x = _recording(tmp_path / "rec.wav", 11)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    proc = subprocess.run(
        [sys.executable, "-m", "tinyasc.cli", "stream", str(run), "--hop", "0.5"],
        input=pcm,
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1 + 3  # header, windows ending at 10, 10.5, 11 s
    assert "real-time factor" in proc.stderr.decode()


@pytest.mark.slow
def test_a_file_streams_in_real_time(trained_run, tmp_path):
    import time

    run, _ = trained_run
    _recording(tmp_path / "rec.wav", 11)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinyasc.cli",
            "stream",
            str(run),
            "--input",
            str(tmp_path / "rec.wav"),
            "--realtime",
        ],
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert time.perf_counter() - t0 >= 11.0  # paced at the recording's own speed
    assert len(proc.stdout.decode().splitlines()) == 1 + 2  # windows ending at 10 and 11 s


@pytest.mark.parametrize(
    "frontend",
    [
        {},  # the baseline: 500 of 501 frames, hop 882, reflect padding
        {
            "n_fft": 2048,
            "win_length": 2048,
            "hop_length": 1024,
            "window": "hann",
            "n_mels": 256,
            "trim_frames": 0,
        },
        {"duration": 1.0, "trim_frames": 0, "pad_mode": "constant"},
    ],
)
def test_the_sliding_log_mel_equals_the_whole_window(frontend):
    import torch

    from tinyasc.config import FrontendConfig
    from tinyasc.frontend import LogMel, SlidingLogMel

    fe = FrontendConfig(**frontend)
    logmel = LogMel(fe)
    hop = fe.hop_length * max(1, fe.n_frames // 10)
    assert SlidingLogMel.usable(fe, fe.clip_samples, hop)
    assert not SlidingLogMel.usable(fe, fe.clip_samples, hop + 1)  # not a multiple of the frontend hop
    assert not SlidingLogMel.usable(fe, fe.clip_samples - 1, hop)  # a window shorter than the clip
    sliding = SlidingLogMel(logmel, hop)
    x = torch.from_numpy(
        np.random.default_rng(0).standard_normal(fe.clip_samples + 4 * hop).astype(np.float32)
    )
    for t in range(5):
        w = x[t * hop : t * hop + fe.clip_samples]
        torch.testing.assert_close(sliding(w), logmel(w[None]), atol=2e-6, rtol=0)
    assert sliding.computed < 2 * fe.n_frames  # the four later windows computed a fraction of theirs


def test_a_hop_off_the_frame_grid_still_equals_offline(trained_run, tmp_path):
    run, _ = trained_run
    lm = load_model(run)
    _recording(tmp_path / "rec.wav", seconds=12)
    results, _ = stream_predict(lm, file_blocks(tmp_path / "rec.wav", 4096), hop_s=0.5005, out=io.StringIO())
    (offline,) = predict_files(lm, [tmp_path / "rec.wav"], window_s=10.0, hop_s=0.5005, workers=1)
    full = [p for s, e, p in offline.windows if abs(e - s - 10.0) < 1e-9]
    assert len(results) == len(full) == 4
    for (_, p, _), q in zip(results, full, strict=True):
        np.testing.assert_allclose(p, q, atol=1e-6)


def test_a_microphone_without_its_library_is_one_clear_line(trained_run, capsys):
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        pass
    else:
        pytest.skip("sounddevice and PortAudio are installed here")
    from tinyasc.cli import main

    run, _ = trained_run
    assert main(["stream", str(run), "--input", "mic"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing printed before the error
    assert "--input mic needs the sounddevice package and the PortAudio library" in captured.err
