"""The lock on --out and all-or-nothing publication, with real `hrcam prepare` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hrcam import cli, data
from hrcam.data import publish


def _hrcam(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hrcam", *args], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_two_concurrent_runs_one_wins_cleanly(tmp_path):
    args = ["prepare", "synthetic", "--out", "X", "--per-class", "100", "--im-size", "32"]
    procs = [_hrcam(*args, "--seed", str(seed), cwd=tmp_path) for seed in (0, 1)]
    outputs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], (codes, outputs)
    winner = codes.index(0)
    err = outputs[1 - winner][1]
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / 'X'} is being prepared by pid {procs[winner].pid} on host" in err
    assert "--seed" in err and "Wait for that preparation to finish" in err
    clean = tmp_path / "clean"
    data.generate_synthetic(clean, per_class=100, im_size=32, seed=winner)
    assert _tree(tmp_path / "X") == _tree(clean)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X", "clean"]  # no lock, no staging


def test_killed_run_leaves_nothing_readable_and_never_damages_a_dataset(tmp_path):
    out = tmp_path / "X"
    stage = tmp_path / ".X.partial"
    big = ["prepare", "synthetic", "--out", str(out), "--per-class", "100000", "--im-size", "32"]

    def kill_midway():
        proc = _hrcam(*big, cwd=tmp_path)
        try:
            _wait_for(lambda: stage.is_dir() and any(stage.rglob("*.jpg")))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    kill_midway()
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        data.list_images(out, "train")
    with pytest.raises(ValueError, match=f"{stage} was not completely prepared.*--per-class "
                                         "100000 --im-size 32` again"):
        data.list_images(stage, "train")
    with pytest.raises(ValueError, match="not completely prepared"):
        data.read_classes(stage)

    # the next run cleans up and succeeds (the dead holder's lock is no obstacle)
    assert cli.main(["prepare", "synthetic", "--out", str(out), "--classes", "2",
                     "--per-class", "4", "--im-size", "16"]) == 0
    assert not stage.exists() and not (tmp_path / ".X.lock").exists()
    before = _tree(out)
    assert len(data.list_images(out, "train")[0]) == 6

    kill_midway()  # a killed run does not touch the complete dataset already there
    assert _tree(out) == before
    assert len(data.list_images(out, "train")[0]) == 6


def test_a_held_lock_refuses_at_once_and_a_stale_one_does_not(tmp_path, capsys):
    out = tmp_path / "X"
    with publish.output_lock(out):
        t0 = time.monotonic()
        assert cli.main(["prepare", "synthetic", "--out", str(out), "--per-class", "2"]) == 2
        assert time.monotonic() - t0 < 5
    err = capsys.readouterr().err
    assert f"pid {os.getpid()} on host" in err and "Traceback" not in err
    assert not out.exists()
    # a lock file left by a process that is gone (no flock held): reused
    (tmp_path / ".X.lock").write_text(json.dumps({"pid": 999999999, "host": "elsewhere"}))
    data.generate_synthetic(out, classes=2, per_class=2, im_size=16)
    assert data.read_classes(out) == [("disk", "disk"), ("square", "square")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["X"]


def _bad_folder_source(tmp_path: Path) -> Path:
    src = tmp_path / "bad_src"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / cls / "0.jpg")
    (src / "b" / "0.jpg").write_bytes(b"broken")  # class b: no decodable image
    return src


def test_failed_preparations_leave_nothing_behind(tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "out"
    bad_csv = tmp_path / "boxes.csv"
    bad_csv.write_text("file,x,y\n")
    src = _bad_folder_source(tmp_path)
    commands = [
        (["synthetic", "--classes", "1"], "--classes must be between 2"),
        (["folder", "--src", str(tmp_path / "missing")], "--src"),
        (["folder", "--src", str(src), "--boxes", str(bad_csv)], "--boxes"),
        (["folder", "--src", str(src), "--masks", str(tmp_path / "missing")], "--masks"),
        (["folder", "--src", str(src)], "has no decodable image"),  # after conversion began
        (["imagenet-val", "--val-tar", str(tmp_path / "missing.tar"), "--solution-csv",
          str(bad_csv)], "--val-tar"),
    ]
    for command, message in commands:
        assert cli.main(["prepare", *command, "--out", str(out)]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("hrcam prepare: error: ") and message in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "new").exists(), command


def test_existing_dataset_replaced_only_by_a_complete_one(tmp_path):
    out = tmp_path / "out"
    data.generate_synthetic(out, classes=2, per_class=3, im_size=16)
    before = _tree(out)
    with pytest.raises(ValueError, match="no decodable image"):
        data.prepare_folder(_bad_folder_source(tmp_path), out, im_size=16)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad_src", "out"]
    data.generate_synthetic(out, classes=3, per_class=3, im_size=16, seed=1)
    assert len(data.read_classes(out)) == 3 and _tree(out) != before


def test_out_holding_other_files_is_refused_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not part of an hrcam dataset: notes.txt;"):
        data.generate_synthetic(out, classes=2, per_class=2, im_size=16)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    with pytest.raises(ValueError, match="is a file"):
        data.generate_synthetic(out / "notes.txt", classes=2, per_class=2, im_size=16)


def test_plain_user_tree_without_marker_is_read(tmp_path):
    for cls in ("b", "a"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "x.jpg").write_bytes(b"")
    assert data.list_images(tmp_path, "train")[2] == ["a", "b"]
    assert data.read_classes(tmp_path) == [("a", "a"), ("b", "b")]
