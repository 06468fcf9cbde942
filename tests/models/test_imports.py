"""The plain-torch layers (models, tasks, losses) import plain torch: no Lightning, no
torchvision, no PIL. Checked in a fresh interpreter, since the test process has them loaded."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses: `pytest -m 'not slow'` skips the file

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


WATCH_TORCH = (
    "import importlib.abc, os, sys\n"
    "class Watch(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name == 'torch':\n"
    "            print('torch', os.environ.get('THP_MEM_ALLOC_ENABLE'))\n"
    "sys.meta_path.insert(0, Watch())\n"
)


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    env = env or {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout


def test_importing_cpc_leaves_the_environment_alone_and_loads_no_torch():
    code = (
        WATCH_TORCH + "before = dict(os.environ)\nimport cpc\nprint(dict(os.environ) == before)\n"
    )
    assert run_python(code).split() == ["True"]  # no torch import printed, nothing set


def test_the_cpc_command_asks_for_huge_pages_before_torch_loads_unless_told_not_to():
    """``cpc`` (the console script imports ``cpc.cli.main``) sets THP_MEM_ALLOC_ENABLE=1 before
    torch is imported (torch reads it once, at its first allocation); a user's =0 is kept."""
    code = WATCH_TORCH + "from cpc.cli import main\n"
    assert run_python(code).split()[:2] == ["torch", "1"]  # set when torch was first imported
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}
    assert run_python(code, env).split()[:2] == ["torch", "0"]


@pytest.mark.parametrize(("setting", "huge"), [(None, True), ("0", False)])
def test_the_commands_setting_puts_large_cpu_tensors_on_huge_pages(setting, huge):
    """The ``cpc`` command's setting (THP_MEM_ALLOC_ENABLE before torch loads) makes torch
    madvise tensors of 2 MB and more to transparent huge pages; ``=0`` in the environment opts
    out."""
    mode = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if not mode.exists() or "[madvise]" not in mode.read_text():
        pytest.skip("only a Linux kernel in THP madvise mode leaves huge pages to the process")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if setting is not None:
        env["THP_MEM_ALLOC_ENABLE"] = setting
    code = (
        "import re, cpc.run.environment, torch; t = torch.ones(16 << 20, dtype=torch.uint8); "
        "smaps = open('/proc/self/smaps').read(); "
        "print(sum(int(kb) for kb in re.findall(r'AnonHugePages:\\s+(\\d+)', smaps)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert (int(out) >= 8 << 10) == huge  # kB: at least half of the tensor on huge pages
