"""`hrcam.workflow`: the workflow's config checks (each names the key) and its command-line
flags (canonical order, so that reordering a config never reruns a job)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from hrcam import workflow as wf

ROOT = Path(__file__).resolve().parents[1]


def _config(**changes):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for block, values in changes.items():
        if isinstance(values, dict):
            config.setdefault(block, {}).update(values)
        else:
            config[block] = values
    validate(config, str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    return config


def test_flags_are_sorted_and_typed():
    assert wf.flags({"b": 1, "a_b": "x y", "c": None, "d": True, "e": False, "f": [1, "2"]}) == \
        "--a-b 'x y' --b 1 --d --no-e --f 1 2"
    assert wf.flags({"cache": False, "cache2": True}, switches=("cache",)) == "--cache2"
    assert wf.flags({"a": 1, "b": 2}, only=("b",)) == "--b 2"


def test_train_flags():
    config = _config(train={"arch": {"preset": "small", "growth_rate": 4}})
    half = wf.train_flags(config, "half")
    assert "--arch small" in half and "--arch-set growth_rate=4" in half
    assert "--im-size 64" in half and "--seed" not in half  # the seed is the rule's wildcard
    full = wf.train_flags(config, "full")
    assert "--epochs 5" in full and "--arch" not in full  # the half model's architecture


def test_expected_classes_and_render_classes(tmp_path):
    assert [c for c, _ in wf.expected_classes(_config())] == [
        "disk", "square", "triangle", "star", "cross", "ring"]
    wf.check_config(_config(render={"classes": ["ring", "0"]}))
    with pytest.raises(wf.ConfigError, match="render.classes: unknown class"):
        wf.check_config(_config(render={"classes": ["hexagon"]}))
    src = tmp_path / "src"
    for name in ("red fox", "owl"):
        (src / name).mkdir(parents=True)
        (src / name / "a.jpg").write_bytes(b"")
    folder = _config(data={"source": "folder", "folder": {"src": str(src)}})
    assert wf.expected_classes(folder) == [("owl", "owl"), ("red_fox", "red fox")]
    wf.check_config({**folder, "render": {**folder["render"], "classes": ["red fox"]}})


def test_localization_source_and_requirement(tmp_path):
    assert wf.localization_data(_config()) == ("data", "test")
    assert wf.localization_data(_config(evaluate={"localization": False})) is None
    src = tmp_path / "src"
    for name in ("a", "b"):
        (src / name).mkdir(parents=True)
        (src / name / "x.jpg").write_bytes(b"")
    folder = _config(data={"source": "folder", "folder": {"src": str(src)}})
    assert wf.localization_data(folder) is None
    with pytest.raises(wf.ConfigError, match="evaluate.localization: true needs annotations"):
        wf.localization_data({**folder, "evaluate": {**folder["evaluate"], "localization": True}})
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,xmin,ymin,xmax,ymax\n")
    annotated = _config(data={"source": "folder", "folder": {"src": str(src),
                                                             "boxes": str(boxes)}})
    assert wf.localization_data(annotated) == ("data", "test")
    wf.check_config(annotated)
    with pytest.raises(wf.ConfigError, match="data.folder.masks"):
        wf.check_config(_config(data={"source": "folder", "folder": {
            "src": str(src), "masks": str(tmp_path / "nowhere")}}))


def test_imagenet_checks(tmp_path):
    tar = tmp_path / "train.tar"
    tar.write_bytes(b"")
    one = tmp_path / "one.txt"
    one.write_text("n01440764 tench\n")
    config = _config(data={"source": "imagenet", "imagenet": {"train_tar": str(tar),
                                                              "synsets": str(one)}})
    with pytest.raises(wf.ConfigError, match="data.imagenet.synsets: .* 1 synset"):
        wf.check_config(config)
    config["data"]["imagenet"]["synsets"] = None
    config["data"]["imagenet"]["num_classes"] = 3
    wf.check_config(config)
    assert wf.imagenet_wnids(config) == ["n01440764", "n01443537", "n01484850"]
    assert wf.localization_data(config) is None
    config["data"]["imagenet"]["train_dir"] = str(tmp_path)
    with pytest.raises(wf.ConfigError, match="set only one of them"):
        wf.check_config(config)
