import json
import os

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

import cpc.eval.callbacks as callbacks
from cpc.data.datamodule import ImageDataModule
from cpc.eval.callbacks import EvaluationReport, OnlineKNN
from cpc.eval.features import extract_features
from cpc.eval.knn import KNN
from cpc.eval.protocol import EvalProtocol
from cpc.models.encoder import ResNetEncoder


class Quadrants(ImageDataModule):
    """Four classes: which quadrant of a 16x16 image is bright. Records eval requests."""

    num_channels = 1
    image_size = (16, 16)
    class_names = ["tl", "tr", "bl", "br"]

    def __init__(self) -> None:
        super().__init__(batch_size=8, val_size=16, num_workers=0)
        self.requests: list[str] = []

    def load_source(self, source):
        n = {"train": 48, "test": 16}[source]
        generator = torch.Generator().manual_seed(len(source))
        labels = torch.arange(n) % 4
        images = torch.randint(0, 60, (n, 1, 16, 16), generator=generator, dtype=torch.uint8)
        for i, label in enumerate(labels.tolist()):
            r, c = divmod(label, 2)
            images[i, :, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8] += 150
        return images, labels

    def eval_dataloader(self, split, batch_size=None):
        self.requests.append(split)
        return super().eval_dataloader(split, batch_size)


class TinyModule(L.LightningModule):
    """An encoder and a stand-in loss: enough for the callbacks' contract."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = ResNetEncoder(in_channels=1, width=8)

    def training_step(self, batch, batch_idx):
        return self.encoder(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.encoder(batch[0]).pow(2).mean(), sync_dist=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Recorder(L.Callback):
    """Records ``val/knn_top1`` after every validation (and writes it per rank, if asked)."""

    def __init__(self, folder=None) -> None:
        self.values: list[float | None] = []
        self.folder = folder

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val/knn_top1")
        self.values.append(None if value is None else value.item())
        if self.folder is not None:
            path = os.path.join(self.folder, f"rank{trainer.global_rank}.json")
            with open(path, "w") as f:
                json.dump(self.values, f)


def trainer(tmp_path, callbacks, max_epochs=1, **kwargs):
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        callbacks=callbacks,
        logger=False,
        enable_model_summary=False,
        **{"enable_progress_bar": False, "num_sanity_val_steps": 1, **kwargs},
    )


def test_online_knn_logs_the_val_knn_accuracy_of_a_fixed_train_bank(tmp_path):
    dm, model, recorder = Quadrants(), TinyModule(), Recorder()
    knn = OnlineKNN(bank_size=20, protocol=EvalProtocol(k=3))
    trainer(tmp_path, [knn, recorder], enable_checkpointing=False).fit(model, datamodule=dm)

    assert recorder.values == [trainer_value := recorder.values[0]] and trainer_value is not None
    assert "test" not in dm.requests  # the test split is never touched
    bank = knn._bank(dm)
    assert len(bank.dataset) == 20 and bank.dataset.indices == sorted(bank.dataset.indices)
    # the same number from the pure functions, on the trained encoder
    bank_f, bank_y = extract_features(model.encoder, bank, progress=False)
    val_f, val_y = extract_features(model.encoder, dm.eval_dataloader("val"), progress=False)
    expected = KNN(EvalProtocol(k=3)).fit(bank_f, bank_y, 4).accuracy(val_f, val_y)["top1"]
    assert trainer_value == pytest.approx(expected)
    assert knn.state_dict() == {"validation_runs": 1}  # the sanity check does not count


@pytest.mark.slow
def test_online_knn_schedule_survives_checkpoint_and_resume(tmp_path):
    """every_n_epochs=2: evaluated after the 2nd and 4th validation, across a resume."""
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    recorder = Recorder()
    callbacks = [
        OnlineKNN(every_n_epochs=2, bank_size=16, protocol=EvalProtocol(k=3)),
        recorder,
        ckpt,
    ]
    trainer(tmp_path, callbacks, max_epochs=3).fit(TinyModule(), datamodule=Quadrants())
    assert [v is not None for v in recorder.values] == [False, True, True]  # 3rd keeps the 2nd's
    assert torch.load(ckpt.last_model_path, weights_only=False)["callbacks"]["OnlineKNN"] == {
        "validation_runs": 3
    }

    resumed = Recorder()
    callbacks = [OnlineKNN(every_n_epochs=2, bank_size=16, protocol=EvalProtocol(k=3)), resumed]
    trainer(tmp_path, callbacks, max_epochs=4, enable_checkpointing=False).fit(
        TinyModule(), datamodule=Quadrants(), ckpt_path=ckpt.last_model_path
    )
    assert resumed.values[0] is not None  # 4th validation run: on schedule
    assert callbacks[0].validation_runs == 4


def test_online_knn_zero_disables_and_bad_arguments_are_rejected(tmp_path):
    dm, recorder = Quadrants(), Recorder()
    callbacks = [OnlineKNN(every_n_epochs=0), recorder]
    trainer(tmp_path, callbacks, enable_checkpointing=False).fit(TinyModule(), datamodule=dm)
    assert recorder.values == [None] and dm.requests == []
    with pytest.raises(ValueError, match="every_n_epochs"):
        OnlineKNN(every_n_epochs=-1)


def test_callbacks_fail_before_training_without_an_eval_data_module(tmp_path):
    loader = Quadrants().eval_dataloader("train")
    for callback in (OnlineKNN(), EvaluationReport()):
        with pytest.raises(ValueError, match="eval_dataloader"):
            trainer(tmp_path, [callback], enable_checkpointing=False).fit(TinyModule(), loader)


def test_evaluation_report_writes_json_next_to_the_checkpoints(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)
    probe = {"epochs": 1, "weight_decays": [0.0]}
    report = EvaluationReport(k=3, baselines=False, probe_kwargs=probe)
    trainer(tmp_path, [report, ckpt]).fit(TinyModule(), datamodule=Quadrants())
    assert report.path == tmp_path / "ckpts" / "report.json"
    written = json.loads(report.path.read_text())
    assert set(written) == {"encoder", "encoder_compact", "meta"}
    assert written["meta"]["checkpoint"] == ckpt.last_model_path
    assert (written["meta"]["epoch"], written["meta"]["global_step"]) == (
        1,
        4,
    )  # 32 train images // 8

    disabled = EvaluationReport(enabled=False)
    trainer(tmp_path / "off", [disabled]).fit(TinyModule(), datamodule=Quadrants())
    assert disabled.path is None and not list((tmp_path / "off").rglob("report.json"))


def test_evaluation_report_is_skipped_under_fast_dev_run(tmp_path):
    report = EvaluationReport()
    trainer(tmp_path, [report], fast_dev_run=True).fit(TinyModule(), datamodule=Quadrants())
    assert report.path is None and not list(tmp_path.rglob("report.json"))


@pytest.mark.slow
def test_online_knn_under_ddp_spawn_gives_the_same_value_on_both_ranks(tmp_path):
    dm, model = Quadrants(), TinyModule()
    callbacks = [
        OnlineKNN(bank_size=24, protocol=EvalProtocol(k=3)),
        Recorder(folder=str(tmp_path)),
    ]
    ddp = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        default_root_dir=tmp_path,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
    )
    ddp.fit(model, datamodule=dm)
    values = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert values[0] == values[1] and values[0][0] is not None
    # the weights that came back from rank 0 give the same number in one process
    assert values[0][0] == pytest.approx(callbacks[0].knn_top1(model.encoder, dm, "cpu"))
    assert ddp.callback_metrics["val/knn_top1"].item() == pytest.approx(values[0][0])


def test_training_bar_is_stopped_before_the_report(tmp_path, monkeypatch):
    """Rich's live bar is stopped before the report runs (so it is drawn above the report),
    not left live and redrawn under the report when Lightning stops it at teardown."""
    bar, live_during_report = RichProgressBar(), []

    def evaluate(*args, **kwargs):
        live_during_report.append(bar.progress.live.is_started)
        return {"meta": {}}

    monkeypatch.setattr(callbacks, "evaluate", evaluate)
    monkeypatch.setattr(callbacks, "format_report", lambda report: "")
    report = EvaluationReport(k=3, baselines=False)
    trainer(tmp_path, [report, bar], enable_progress_bar=True, num_sanity_val_steps=0).fit(
        TinyModule(), datamodule=Quadrants()
    )
    assert live_during_report == [False]
