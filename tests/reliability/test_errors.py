"""Every bad input of issue 11 ends in one line on stderr naming what to change, with exit
status 1 (or 2 for the command line itself), and no run folder left behind.

The console script's ``main`` runs in-process (a subprocess costs ~5 s); one subprocess test
checks what a shell really sees. ``CPC_DEBUG=1`` still gives the traceback.
"""

import errno
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import fit_args

from cpc import cli

REPO = Path(__file__).resolve().parents[2]


def cpc(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """``cpc ARGS`` in-process: (exit status, the one line it printed to stderr)."""
    monkeypatch.setattr("sys.argv", ["cpc", *map(str, args)])
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    code, err = exit_info.value.code, capsys.readouterr().err
    if isinstance(code, str):  # sys.exit(message): Python prints it and exits with status 1
        assert err == ""
        code, err = 1, code + "\n"
    assert err.count("\n") == 1, err  # one line
    return code, err.rstrip("\n")


def no_run_folder(root: Path) -> bool:
    return not root.exists() or not any(root.rglob("version_*"))


# --- the checkpoint given to `cpc eval --ckpt_path` and `cpc fit --ckpt_path` ---------------


def write_bad_checkpoint(kind: str, folder: Path) -> Path:
    """A file that is not a loadable Lightning checkpoint."""
    path = folder / f"{kind}.ckpt"
    if kind == "garbage":
        path.write_bytes(b"not a checkpoint\n")
    elif kind == "truncated":  # a checkpoint cut short, as a kill during the write leaves it
        torch.save({"state_dict": {"w": torch.zeros(1000)}, "pytorch-lightning_version": "2"}, path)
        path.write_bytes(path.read_bytes()[:2000])
    else:  # "weights": a torch file, but a bare state dict rather than a Lightning checkpoint
        torch.save({"w": torch.zeros(3)}, path)
    return path


BAD_CHECKPOINTS = {
    "garbage": "is not a checkpoint (truncated, or another format)",
    "truncated": "is not a checkpoint (truncated, or another format)",
    "weights": "is not a Lightning checkpoint (no state_dict)",
}


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_eval_of_a_file_that_is_not_a_checkpoint(kind, monkeypatch, capsys, tmp_path):
    path = write_bad_checkpoint(kind, tmp_path)
    code, line = cpc(monkeypatch, capsys, "eval", f"--ckpt_path={path}")
    assert code == 1
    assert line.startswith(f"cpc: error: {path} {BAD_CHECKPOINTS[kind]}: pass a .ckpt")
    assert "weights_only" not in line  # torch's hint, which would not help


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_fit_from_a_file_that_is_not_a_checkpoint(kind, monkeypatch, capsys, tiny_folder, tmp_path):
    path = write_bad_checkpoint(kind, tmp_path)
    args = fit_args(tiny_folder, tmp_path / "run", f"--ckpt_path={path}")
    code, line = cpc(monkeypatch, capsys, *args)
    assert code == 1 and f"{path} {BAD_CHECKPOINTS[kind]}" in line
    assert not (tmp_path / "run").exists()


def test_a_zip_that_is_not_a_torch_archive_is_a_corrupt_checkpoint(monkeypatch, capsys, tmp_path):
    path = tmp_path / "other.ckpt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "a zip archive, but not torch's")
    code, line = cpc(monkeypatch, capsys, "eval", f"--ckpt_path={path}")
    assert code == 1 and line.startswith(f"cpc: error: {path} is a corrupt checkpoint (")
    assert "): pass a .ckpt written by cpc fit" in line and "weights_only" not in line


class Payload:
    """A class a pickle may name: loading it with weights_only=False would run its code."""


def test_a_checkpoint_holding_a_python_object_is_not_unpickled(monkeypatch, capsys, tmp_path):
    path = tmp_path / "object.ckpt"
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2", "x": Payload()}, path)
    code, line = cpc(monkeypatch, capsys, "eval", f"--ckpt_path={path}")
    assert code == 1
    assert line.startswith(f"cpc: error: {path} holds a Python object ({__name__}.Payload)")


def lightning_checkpoint(path: Path, **entries) -> Path:
    """The least a Lightning checkpoint holds, and ``entries``; no weights."""
    torch.save({"state_dict": {}, "pytorch-lightning_version": "2.6", **entries}, path)
    return path


def test_fit_from_a_checkpoint_without_a_step(monkeypatch, capsys, tiny_folder, tmp_path):
    path = lightning_checkpoint(tmp_path / "nostep.ckpt")
    args = fit_args(tiny_folder, tmp_path / "run", f"--ckpt_path={path}")
    code, line = cpc(monkeypatch, capsys, *args)
    assert code == 1 and line.startswith(
        f"cpc: error: --ckpt_path {path} is not a checkpoint of cpc fit (no global_step): pass"
    )
    assert not (tmp_path / "run").exists()


def test_fit_from_a_checkpoint_at_max_steps(monkeypatch, capsys, tiny_folder, tmp_path):
    path = lightning_checkpoint(tmp_path / "done.ckpt", global_step=5)
    args = fit_args(tiny_folder, tmp_path / "run", f"--ckpt_path={path}", "--trainer.max_steps=5")
    code, line = cpc(monkeypatch, capsys, *args)
    assert code == 1 and line.startswith(
        f"cpc: error: nothing left to train from --ckpt_path {path}: it is at step 5 and "
        "trainer.max_steps is 5: raise trainer.max_steps"
    )
    assert not (tmp_path / "run").exists()


def test_eval_of_a_checkpoint_away_from_its_run_folder(monkeypatch, capsys, tmp_path):
    """No config.yaml in the checkpoint's folder or two up: the data module must be given."""
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    path = lightning_checkpoint(tmp_path / "a" / "b" / "c" / "copied.ckpt", global_step=2)
    code, line = cpc(monkeypatch, capsys, "eval", f"--ckpt_path={path}")
    assert code == 1 and line.startswith(
        f"cpc: error: no config.yaml with a data section near {path}: pass --data "
        "(e.g. --data cpc.data.FashionMNISTDataModule)"
    )


def test_eval_of_a_missing_checkpoint(monkeypatch, capsys, tmp_path):
    code, line = cpc(monkeypatch, capsys, "eval", f"--ckpt_path={tmp_path / 'no.ckpt'}")
    assert code == 1 and line.startswith(f"cpc: error: checkpoint not found: {tmp_path}")


# --- the machine: GPU, precision, where the run is written ----------------------------------


def test_gpu_accelerator_without_a_gpu(monkeypatch, capsys, tiny_folder, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    args = fit_args(tiny_folder, tmp_path / "run", "--trainer.accelerator=gpu")
    code, line = cpc(monkeypatch, capsys, *args)
    assert code == 1
    assert line.startswith("cpc: error: trainer.accelerator gpu: no GPU is visible")
    assert "use --trainer.accelerator cpu" in line and not (tmp_path / "run").exists()


def test_16_mixed_on_the_cpu_is_refused_not_switched_to_bf16(
    monkeypatch, capsys, tiny_folder, tmp_path
):
    args = fit_args(tiny_folder, tmp_path / "run", "--trainer.precision=16-mixed")
    code, line = cpc(monkeypatch, capsys, *args)
    assert code == 1
    assert line.startswith("cpc: error: trainer.precision 16-mixed needs a GPU")
    assert "use --trainer.precision 32, or bf16-mixed" in line


def test_default_root_dir_below_a_file(monkeypatch, capsys, tiny_folder, tmp_path):
    (tmp_path / "afile").write_text("")
    args = fit_args(tiny_folder, tmp_path / "afile" / "run")
    code, line = cpc(monkeypatch, capsys, *args)
    assert code == 1 and "is a file, not a folder: choose another trainer.default_root_dir" in line


def test_default_root_dir_without_write_permission(monkeypatch, capsys, tiny_folder, tmp_path):
    def denied(*args, **kwargs):  # what a folder without write permission does (tests run as root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr("cpc.run.preflight.tempfile.TemporaryFile", denied)
    code, line = cpc(monkeypatch, capsys, *fit_args(tiny_folder, tmp_path / "run"))
    assert code == 1
    assert f"cannot write in {tmp_path} (Permission denied)" in line
    assert line.endswith(
        "choose a writable trainer.default_root_dir (CPC_DEBUG=1 shows the traceback)"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (errno.ENOSPC, "no space left on the device writing"),
        (errno.EROFS, "cannot write"),
    ],
)
def test_disk_full_or_read_only_while_training(
    error, message, monkeypatch, capsys, tiny_folder, tmp_path
):
    def failing_save(obj, f, *args, **kwargs):  # the disk fails: an OSError with no file name
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(torch, "save", failing_save)
    code, line = cpc(monkeypatch, capsys, *fit_args(tiny_folder, tmp_path / "run"))
    assert code == 1 and line.startswith(f"cpc: error: {message}")
    checkpoints = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints"
    assert re.search(rf"{re.escape(str(checkpoints))}/[^/ ]+\.ckpt\b", line), line


# --- the command line and config files -------------------------------------------------------


def test_mistyped_option_is_one_line_with_a_suggestion(monkeypatch, capsys, tiny_folder, tmp_path):
    code, line = cpc(monkeypatch, capsys, *fit_args(tiny_folder, tmp_path, "--model.lrr=0.1"))
    assert code == 2
    assert line == (
        "cpc fit: error: unknown option --model.lrr: did you mean --model.lr? "
        "(cpc fit --help lists every option)"
    )


def test_mistyped_key_in_a_config_file(monkeypatch, capsys, tiny_folder, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("trainer:\n  max_step: 5\n")
    code, line = cpc(monkeypatch, capsys, *fit_args(tiny_folder, tmp_path, config=config))
    assert (
        code == 2 and "unknown option --trainer.max_step: did you mean --trainer.max_steps?" in line
    )


def test_missing_config_file(monkeypatch, capsys, tiny_folder, tmp_path):
    missing = tmp_path / "nothere.yaml"
    code, line = cpc(monkeypatch, capsys, *fit_args(tiny_folder, tmp_path, config=missing))
    assert code == 2 and line.startswith(f"cpc fit: error: config file not found: '{missing}'")


def test_wrong_type_inside_the_data_module(monkeypatch, capsys, tiny_folder, tmp_path):
    args = fit_args(tiny_folder, tmp_path, "--data.init_args.batch_size=abc")
    code, line = cpc(monkeypatch, capsys, *args)
    assert code == 2 and line.startswith(
        "cpc fit: error: --data.batch_size: expected an int, got 'abc'"
    )


def test_nan_learning_rate(monkeypatch, capsys, tiny_folder, tmp_path):
    code, line = cpc(monkeypatch, capsys, *fit_args(tiny_folder, tmp_path, "--model.lr=nan"))
    assert code == 2 and line.startswith(
        "cpc fit: error: --model.lr: got nan, give a finite number"
    )


def test_yaml_syntax_error_names_the_file_and_line(monkeypatch, capsys, tiny_folder, tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("model:\n  lr: [0.1,\n")
    code, line = cpc(monkeypatch, capsys, *fit_args(tiny_folder, tmp_path, config=config))
    assert code == 1 and line.startswith(f"cpc: error: {config}, line 3 column 1: ")
    assert "fix the YAML syntax" in line


# --- CPC_DEBUG and the real console script ---------------------------------------------------


def test_cpc_debug_shows_the_traceback_and_the_full_parser_message(
    monkeypatch, capsys, tiny_folder, tmp_path
):
    monkeypatch.setenv("CPC_DEBUG", "1")
    args = fit_args(tiny_folder, tmp_path / "run", "--trainer.precision=16-mixed")
    monkeypatch.setattr("sys.argv", ["cpc", *args])
    with pytest.raises(ValueError, match="needs a GPU"):  # the exception itself, not SystemExit
        cli.main()
    monkeypatch.setattr("sys.argv", ["cpc", *fit_args(tiny_folder, tmp_path, "--model.lrr=1")])
    with pytest.raises(SystemExit):
        cli.main()
    assert "usage:" in capsys.readouterr().err  # jsonargparse's own message, with usage


@pytest.mark.slow
def test_console_script_prints_one_line_and_exit_status_1(tiny_folder, tmp_path):
    """What a shell sees: stdout empty, stderr one line, status 1 (CPC_DEBUG: tested above)."""
    args = fit_args(tiny_folder, tmp_path / "run", "--trainer.accelerator=gpu")
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("CPC_DEBUG", None)
    command = [sys.executable, "-m", "cpc.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("cpc: error: trainer.accelerator gpu: no GPU is visible")
    assert not (tmp_path / "run").exists()


# --- the same one-line rules elsewhere: a DDP worker's error, python -m cpc.viz --------------


def test_a_ddp_spawn_workers_user_error_is_one_line():
    from torch.multiprocessing import ProcessRaisedException

    from cpc.run.console import error_line

    trace = "Traceback (most recent call last):\n  File ...\nValueError: set data.val_size > 0\n"
    err = ProcessRaisedException(f"\n\n-- Process 0 terminated:\n{trace}", 0, 123)
    assert error_line(err) == "set data.val_size > 0"
    bug = ProcessRaisedException("\n-- Process 0 terminated:\nKeyError: 'x'\n", 0, 123)
    assert error_line(bug) is None  # a bug keeps its traceback


def test_a_choice_outside_the_allowed_values(monkeypatch, capsys, tiny_folder, tmp_path):
    code, line = cpc(
        monkeypatch, capsys, *fit_args(tiny_folder, tmp_path, "--trainer.precision=17")
    )
    assert code == 2 and line.startswith(
        "cpc fit: error: --trainer.precision: got '17', choose one"
    )
    assert "'bf16-mixed'" in line


def test_viz_errors_are_one_line(monkeypatch, tmp_path):
    from cpc.viz.script import console_main

    monkeypatch.setattr("sys.argv", ["python -m cpc.viz", f"--ckpt_path={tmp_path / 'none'}"])
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        console_main()
    assert str(exit_info.value.code).startswith("python -m cpc.viz: error: no checkpoint at")
    assert "\n" not in str(exit_info.value.code)


# --- options whose error jsonargparse or torch would bury (issue 22) --------------------------


@pytest.mark.parametrize(
    ("option", "code", "expected"),
    [
        (
            '--model.tasks=[{"class_path": "cpc.tasks.CPCTask", '
            '"init_args": {"directions": ["diagonal"]}}]',
            2,
            "cpc fit: error: --model.tasks.directions: got 'diagonal', choose one of 'down', "
            "'up', 'right', 'left' (cpc fit --help lists every option)",
        ),
        (
            "--data.batchsize=64",
            2,
            "cpc fit: error: unknown option --data.batchsize: did you mean --data.batch_size? "
            "(cpc fit --help lists every option)",
        ),
        (
            '--model.tasks=[{"class_path": "cpc.tasks.CPCTsk"}]',
            2,
            "cpc fit: error: --model.tasks: there is no class cpc.tasks.CPCTsk: did you mean "
            "cpc.tasks.CPCTask? (cpc fit --help lists every option)",
        ),
        (
            "--data.batch_size=0",
            1,
            "cpc: error: need batch_size >= 1 and val_size >= 0, got 0, 0.25 (CPC_DEBUG=1 "
            "shows the traceback)",
        ),
        (
            "--model.lr=-0.1",
            1,
            "cpc: error: --model.lr -0.1: give a value >= 0 (e.g. --model.lr 0.001) (CPC_DEBUG=1 "
            "shows the traceback)",
        ),
    ],
)
def test_an_option_error_is_one_line_naming_it(
    option, code, expected, monkeypatch, capsys, tiny_folder, tmp_path
):
    args = fit_args(tiny_folder, tmp_path / "run", option, "--trainer.max_steps=1")
    assert cpc(monkeypatch, capsys, *args) == (code, expected)
    assert no_run_folder(tmp_path / "run")


def viz(monkeypatch, *args) -> str:
    from cpc.viz.script import console_main

    monkeypatch.setattr("sys.argv", ["python -m cpc.viz", *map(str, args)])
    monkeypatch.delenv("CPC_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        console_main()
    assert "\n" not in str(exit_info.value.code)
    return str(exit_info.value.code)


def test_viz_of_a_truncated_checkpoint_is_one_line(monkeypatch, tmp_path):
    path = write_bad_checkpoint("truncated", tmp_path)
    line = viz(monkeypatch, f"--ckpt_path={path}", f"--out={tmp_path / 'figures'}")
    assert line.startswith(f"python -m cpc.viz: error: {path} {BAD_CHECKPOINTS['truncated']}")


def test_viz_checks_out_before_loading_anything(monkeypatch, tmp_path):
    def denied(*args, **kwargs):  # a read-only folder (tests run as root)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    def no_load(*args, **kwargs):
        raise AssertionError("loaded the checkpoint before checking --out")

    path = lightning_checkpoint(tmp_path / "a.ckpt", global_step=2)
    monkeypatch.setattr("cpc.run.preflight.tempfile.TemporaryFile", denied)
    monkeypatch.setattr("cpc.checkpoint.load_encoder", no_load)
    line = viz(monkeypatch, f"--ckpt_path={path}", f"--out={tmp_path / 'figures'}")
    assert line.startswith(f"python -m cpc.viz: error: --out {tmp_path / 'figures'}: cannot write")
    assert "choose a writable --out" in line
