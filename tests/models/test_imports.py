"""The plain-torch layers (models, tasks, losses) import plain torch: no Lightning, no
torchvision, no PIL. Checked in a fresh interpreter, since the test session has them loaded."""

import subprocess
import sys

import pytest

HEAVY = ("lightning", "torchvision", "PIL", "faiss", "torchmetrics")


@pytest.mark.parametrize("module", ["cpc.models", "cpc.tasks", "cpc.losses"])
def test_plain_torch_layers_import_no_framework(module):
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == [], f"importing {module} loaded {loaded}"


def test_eval_features_import_no_faiss_torchmetrics_or_lightning():
    code = (
        f"import sys, cpc.eval.features; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == [], f"importing cpc.eval.features loaded {loaded}"


def test_cpc_eval_exports_resolve():
    import cpc.eval

    assert all(getattr(cpc.eval, name) for name in cpc.eval.__all__)
