"""A fit that fails before it logged or saved anything leaves no run folder behind; a run that
started, or an existing folder (a resumed run), is kept."""

from types import SimpleNamespace

import pytest
from helpers import fit_args, write_image_folder

from cpc.cli import cli_main
from cpc.run.run_folder import discard_unstarted


@pytest.mark.slow
def test_a_fit_failing_at_setup_leaves_no_folder(tmp_path):
    folder = write_image_folder(tmp_path / "rgb", mode="RGB")  # fails in the model's setup,
    args = fit_args(folder, tmp_path / "runs" / "run", "--data.channels=3")  # after the folder
    with pytest.raises(ValueError, match="3 channels but the encoder expects 1"):  # was made
        cli_main(args)
    assert not (tmp_path / "runs").exists()  # the run's folders, up to the first that existed


def fail_in(folder, written: dict[str, str], existed: bool = False):
    """Run a failing 'fit' that writes ``written`` into ``folder``; return the folder."""
    if existed:
        folder.mkdir(parents=True)
    trainer = SimpleNamespace(log_dir=str(folder), is_global_zero=True)
    with pytest.raises(RuntimeError), discard_unstarted(trainer):
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in written.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
        raise RuntimeError("failed")
    return folder


def test_only_unstarted_new_folders_are_removed(tmp_path):
    start = {"config.yaml": "a: 1", "hparams.yaml": "", "events.out.tfevents.1": ""}
    assert not fail_in(tmp_path / "a" / "version_0", start).exists()
    assert not (tmp_path / "a").exists()
    assert fail_in(tmp_path / "b" / "version_0", {**start, "checkpoints/last.ckpt": "x"}).exists()
    logged = {**start, "metrics.csv": "step,train/loss\n0,7.1\n"}
    assert fail_in(tmp_path / "c" / "version_0", logged).exists()
    placeholder = {**start, "metrics.csv": "hp_metric,step\n-1,0\n"}  # TensorBoard's, no step
    assert not fail_in(tmp_path / "e" / "version_0", placeholder).exists()
    assert fail_in(tmp_path / "d" / "version_0", start, existed=True).exists()  # resumed run


def test_other_ranks_and_successful_runs_remove_nothing(tmp_path):
    folder = tmp_path / "version_0"
    with (
        pytest.raises(RuntimeError),
        discard_unstarted(SimpleNamespace(log_dir=str(folder), is_global_zero=False)),
    ):
        folder.mkdir()
        raise RuntimeError("failed on rank 1")
    assert folder.exists()
    with discard_unstarted(SimpleNamespace(log_dir=str(tmp_path / "ok"), is_global_zero=True)):
        (tmp_path / "ok").mkdir()
    assert (tmp_path / "ok").exists()
