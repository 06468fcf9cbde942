"""RunLogger after a resume: what the killed run logged from the checkpoint's step on is
dropped from metrics.csv and hidden in TensorBoard, so each step is logged once."""

import csv
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cpc.run.loggers import RunLogger


def test_a_resumed_run_replaces_what_the_killed_run_logged_after_its_checkpoint(tmp_path):
    killed = RunLogger(tmp_path, version=0)
    for step in range(6):  # killed after step 5, its last checkpoint at step 3
        killed.log_metrics({"train/loss": float(step)}, step)
    killed.finalize("failed")
    resumed = RunLogger(tmp_path, version=0, purge_step=3)
    for step in (3, 4):
        resumed.log_metrics({"train/loss": 10.0 + step}, step)
    resumed.finalize("success")

    expected = [(0, 0.0), (1, 1.0), (2, 2.0), (3, 13.0), (4, 14.0)]
    with open(resumed.log_dir + "/metrics.csv") as file:
        rows = [(int(r["step"]), float(r["train/loss"])) for r in csv.DictReader(file)]
    assert rows == expected
    events = EventAccumulator(resumed.log_dir).Reload().Scalars("train/loss")
    assert [(e.step, e.value) for e in events] == expected


def test_a_resumed_runs_event_file_sorts_after_one_written_in_the_same_second(tmp_path):
    first = RunLogger(tmp_path, version=0)
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.finalize("success")
    # a resume within the same second: its file must still come last in TensorBoard's read order
    resumed = RunLogger(tmp_path, version=0, purge_step=0)
    resumed.log_metrics({"train/loss": 2.0}, step=0)
    resumed.finalize("success")
    files = sorted(Path(resumed.log_dir).glob("events.out.tfevents.*"))
    assert len(files) == 2
    seconds = [int(f.name.split(".")[3]) for f in files]
    assert seconds[0] < seconds[1]
    events = EventAccumulator(resumed.log_dir).Reload()
    assert [e.value for e in events.Scalars("train/loss")] == [2.0]


def test_the_kept_rows_are_on_disk_once_the_fit_starts_not_at_its_first_logged_step(tmp_path):
    """Lightning's first calls of a fit (log_hyperparams, save) make the CSV writer, which
    deletes metrics.csv: the rows before the resumed step are back on disk at once (a kill
    before the first logged step, after the sanity check, would lose them otherwise)."""
    killed = RunLogger(tmp_path, version=0)
    for step in range(6):  # killed after step 5, its last checkpoint at step 3
        killed.log_metrics({"train/loss": float(step)}, step)
    killed.finalize("failed")
    resumed = RunLogger(tmp_path, version=0, purge_step=3)
    resumed.log_hyperparams({"lr": 0.1})  # TensorBoard's logs hp_metric -1 too (a CSV row)
    resumed.save()
    path = Path(resumed.log_dir) / "metrics.csv"

    def losses() -> list[tuple[str, str, str]]:
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
        return [(r["step"], r["train/loss"], r.get("val/loss")) for r in rows if r["train/loss"]]

    assert losses() == [("0", "0.0", None), ("1", "1.0", None), ("2", "2.0", None)]
    assert not list(path.parent.glob(".metrics.csv.*"))  # the temporary file was renamed
    resumed.log_metrics({"train/loss": 13.0, "val/loss": 7.0}, step=3)  # a new column
    resumed.finalize("success")
    assert losses() == [("0", "0.0", ""), ("1", "1.0", ""), ("2", "2.0", ""), ("3", "13.0", "7.0")]
