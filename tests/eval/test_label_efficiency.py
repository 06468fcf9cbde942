import torch

from cpc.eval.label_efficiency import budget_rows, unlabelled_transform
from cpc.eval.protocol import EvalProtocol
from cpc.eval.report_io import format_report

C, D = 4, 24


def features(n: int, generator: torch.Generator, noise: float = 1.0):
    labels = torch.randint(0, C, (n,), generator=generator)
    x = torch.eye(C, D)[labels] * 3 + torch.randn(n, D, generator=generator) * noise
    return x, labels


def splits():
    g = torch.Generator().manual_seed(0)
    (tr, ytr), (va, yva), (te, yte) = (features(n, g) for n in (2000, 300, 400))
    return {"train": tr, "val": va, "test": te}, {"train": ytr, "val": yva, "test": yte}


def test_budget_rows_score_each_draw_on_its_own_subset(monkeypatch):
    """Every draw trains on its class-balanced subset (bank and probe), val and test are the
    whole splits; more labels score at least as well here; mean and std are of the draws."""
    import cpc.eval.label_efficiency as module

    banks, queries = [], []
    fit, accuracy = module.KNN.fit, module.KNN.accuracy

    def record_fit(self, bank, bank_labels, num_classes):
        banks.append((len(bank), torch.bincount(bank_labels, minlength=C).tolist()))
        return fit(self, bank, bank_labels, num_classes)

    def record_accuracy(self, features, labels):
        queries.append(len(features))
        return accuracy(self, features, labels)

    monkeypatch.setattr(module.KNN, "fit", record_fit)
    monkeypatch.setattr(module.KNN, "accuracy", record_accuracy)
    feats, labels = splits()
    protocol = EvalProtocol(label_budgets=(2, 50), label_draws=3, k=20)
    rows = budget_rows(feats, labels, protocol, C, {"epochs": 2})
    assert banks == [(8, [2] * C)] * 3 + [(200, [50] * C)] * 3
    assert queries == [400, 300] * 6  # test and val, whole, for every draw
    for budget in ("2", "50"):
        for method in ("knn", "linear"):
            scores = rows[budget][method]
            draws = torch.tensor(scores["draws"], dtype=torch.float64)
            assert len(draws) == 3 and abs(scores["top1"] - draws.mean().item()) < 1e-9
            assert abs(scores["top1_std"] - draws.std().item()) < 1e-6
    assert rows["50"]["linear"]["top1"] > 0.9 and rows["50"]["knn"]["top1"] > 0.75
    assert rows["50"]["knn"]["top1"] > rows["2"]["knn"]["top1"]


def test_unlabelled_transform_whitens_with_all_training_images():
    feats, _ = splits()
    protocol = EvalProtocol(knn_pca=8, knn_standardize=True)
    white = unlabelled_transform(feats["train"], protocol)(feats["train"])
    assert white.shape == (2000, 8)
    torch.testing.assert_close(torch.cov(white.T), torch.eye(8), atol=1e-3, rtol=0)


def test_the_test_split_never_reaches_selection_or_statistics():
    """Changing every test feature leaves the selected weight decay and the val numbers as
    they were: test is only ever scored."""
    feats, labels = splits()
    protocol = EvalProtocol(label_budgets=(5,), label_draws=2)
    first = budget_rows(feats, labels, protocol, C, {"epochs": 2})["5"]
    shuffled = {**feats, "test": torch.randn_like(feats["test"]) * 100}
    second = budget_rows(shuffled, labels, protocol, C, {"epochs": 2})["5"]
    for method in ("knn", "linear"):
        assert first[method]["val_top1"] == second[method]["val_top1"]
        assert first[method]["top1"] != second[method]["top1"]


def test_report_prints_budget_rows_as_mean_and_std():
    row = {"top1": 0.8512, "top1_std": 0.0031, "val_top1": 0.85, "draws": [0.85, 0.8524]}
    full = {"top1": 0.9, "top5": 0.99}
    report = {
        "encoder": {"knn": full, "linear": full, "budgets": {"10": {"knn": row, "linear": row}}}
    }
    text = format_report(report)
    assert "labels/class" in text and "85.12 ± 0.31" in text
