"""Every shipped config (and every task fragment in configs/tasks/, layered on
configs/fashion_mnist.yaml) parses into the model it describes (its tasks, as written), and builds
its own data class on a generated stand-in and trains one step (fast_dev_run)."""

import importlib
from pathlib import Path

import pytest
import torch
import yaml
from helpers import FIT, fit_args, options, write_image_folder
from stand_ins import make_cifar10, make_mnist, make_stl10

from cpc.cli import cli_main

ROOT = Path(__file__).parents[1] / "configs"
FRAGMENTS = sorted((ROOT / "tasks").glob("*.yaml"))
#: every shipped way to start a fit: a full config alone, or a task fragment layered on
#: configs/fashion_mnist.yaml (``--config full --config fragment``)
CONFIGS = [[c] for c in sorted(ROOT.glob("*.yaml"))]
CONFIGS += [[ROOT / "fashion_mnist.yaml", f] for f in FRAGMENTS]
#: configs whose encoder has no ``width`` to narrow (a torchvision ResNet): fewer images and no
#: checkpoint (135 MB with AdamW's state) instead
NO_WIDTH = {
    name: {
        "model.encoder.width": None,
        "data.batch_size": 2,
        "trainer.enable_checkpointing": "false",
    }
    for name in ("stl10", "streaming_example")
}


def stand_in(data_class: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> dict | None:
    """Write a generated stand-in of ``data_class``'s files under ``root``: the options that
    point the config's own data module at it (a small val split), or None when there is none
    here (the stream of configs/streaming_example.yaml is tested in tests/data/test_streaming.py;
    an image folder of its size stands in for it)."""
    name = data_class.rsplit(".", 1)[-1]
    if name == "FashionMNISTDataModule":
        make_mnist(root)  # 300 train, 100 test images
    elif name == "CIFAR10DataModule":
        make_cifar10(root, monkeypatch)  # 300 train, 60 test images
    elif name == "STL10DataModule":
        make_stl10(root)  # 40 train, 30 unlabeled, 20 test images
    else:
        return None
    return {"data.root": root, "data.val_size": 8, "data.batch_size": 8}


def plain(value):
    """Tuples as lists (a parsed Sequence may be either), recursively."""
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def task_class(class_path: str) -> type:
    module, name = class_path.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def layered(configs: list[Path]) -> dict:
    """The YAML of ``configs`` read in order, each top-level section merged one level deep: a
    later ``model.tasks`` replaces an earlier one whole, as jsonargparse does with lists."""
    merged: dict = {}
    for config in configs:
        for key, section in (yaml.safe_load(config.read_text()) or {}).items():
            if isinstance(section, dict) and isinstance(merged.get(key), dict):
                section = {**merged[key], **section}
            merged[key] = section
    return merged


def test_there_are_configs():
    assert any(c[0].name == "fashion_mnist.yaml" for c in CONFIGS)
    assert {f.stem for f in FRAGMENTS} >= {"rotation", "patch_position", "jigsaw"}


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda f: f.stem)
def test_a_task_fragment_holds_only_the_task_list(fragment):
    written = yaml.safe_load(fragment.read_text())
    assert list(written) == ["model"] and list(written["model"]) == ["tasks"]


def test_a_task_fragment_replaces_the_task_list_of_the_config_before_it(capsys):
    """cifar10.yaml gives CPCTask ``directions: [down, up]``; the fragment's bare CPCTask gets
    the code default back, not a merge of the two lists."""
    fragment = ROOT / "tasks" / "cpc_patch_position.yaml"
    with pytest.raises(SystemExit):
        cli_main(
            ["fit", f"--config={ROOT / 'cifar10.yaml'}", f"--config={fragment}", "--print_config"]
        )
    tasks = yaml.safe_load(capsys.readouterr().out)["model"]["tasks"]
    assert [t["class_path"] for t in tasks] == ["cpc.tasks.CPCTask", "cpc.tasks.PatchPositionTask"]
    assert tasks[0]["init_args"]["directions"] == ["down"]


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "+".join(p.stem for p in c))
def test_config_builds_its_model_and_data_and_trains_one_step(config, tmp_path, monkeypatch):
    written = layered(config)
    narrow = {"model.encoder": None, **NO_WIDTH.get(config[0].stem, {})}  # width=8 of FIT
    given = stand_in(written["data"]["class_path"], tmp_path / "data", monkeypatch)
    if given is None:  # an image folder of the config's image size and channels
        side = written["data"]["init_args"]["image_size"]
        folder = write_image_folder(tmp_path / "images", size=side, mode="RGB")
        data = ["--data.channels=3", f"--data.image_size={side}"]
        args = fit_args(folder, tmp_path / "run", *data, config=config, **narrow)
    else:
        run = {**FIT, **narrow, "trainer.default_root_dir": tmp_path / "run"}
        args = ["fit", *(f"--config={c}" for c in config), *options({**given, **run})]
    cli = cli_main([*args, "--trainer.fast_dev_run=true"])

    if given is not None:  # the config's own data class, on its stand-in
        assert type(cli.datamodule) is task_class(written["data"]["class_path"])
    # the tasks as the YAML writes them, parsed, then built in that order, each with the values
    # the config gives it; a config that names none gets the default, [CPCTask]
    tasks = written["model"].get("tasks", [{"class_path": "cpc.tasks.CPCTask"}])
    parsed, built = cli.config["fit.model.tasks"], list(cli.model.tasks.values())
    assert len(parsed) == len(built) == len(tasks)
    for task, parsed_task, built_task in zip(tasks, parsed, built, strict=True):
        cls = task_class(task["class_path"])
        assert task_class(parsed_task["class_path"]) is cls and type(built_task) is cls
        for key, value in (task.get("init_args") or {}).items():
            assert plain(parsed_task["init_args"][key]) == plain(value), (cls.__name__, key)
            assert plain(getattr(built_task, key)) == plain(value), (cls.__name__, key)

    assert cli.trainer.global_step == 1
    losses = {k: v for k, v in cli.trainer.callback_metrics.items() if k.endswith("loss")}
    assert "train/loss" in losses and all(torch.isfinite(v) for v in losses.values())


def test_switching_the_context_keeps_its_own_defaults(capsys):
    tasks = (
        '[{"class_path": "cpc.tasks.CPCTask", "init_args": {"context": "cpc.models.GRUContext"}}]'
    )
    with pytest.raises(SystemExit):
        cli_main(["fit", f"--model.tasks={tasks}", "--print_config"])
    printed = capsys.readouterr().out
    context = printed[printed.index("class_path: cpc.models.GRUContext") :]
    assert "layers: 1" in context.split("projection_dim")[0]
