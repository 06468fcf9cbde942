"""cpc uses the public API of Lightning (and of every other library) but for a short list of
known, commented exceptions: a new private use fails here, to be replaced or listed with why.

Private means a ``_name`` (not ``__dunder__``) that cpc does not define itself: an attribute
read or written on another library's object (``trainer.fit_loop._x``, ``getattr(x, "_x")``),
a name imported from another library (``from lightning... import _X`` or a ``_module``), or a
method of a library base class that a cpc class overrides (``def _compute`` in a subclass of
Lightning's callback).
"""

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import cpc

PACKAGE = Path(cpc.__file__).parent

#: (file, private name) -> why it is used; each is checked to still exist (no stale entries)
ALLOWED = {
    # the logging step after an epoch-end resume; Lightning has no public way to set it
    ("run/lightning_fixes.py", "_batches_that_stepped"): "lightning fit_loop.epoch_loop counter",
    # the type Trainer(precision=...) accepts, for cpc's Trainer that adds "auto"
    ("run/lightning_cli.py", "_PRECISION_INPUT"): "lightning.fabric.connector type alias",
    # ThroughputMonitor fills Lightning's per-stage Throughput objects with the measured peak,
    # and logs them under cpc's names instead of Lightning's
    ("run/throughput.py", "_throughputs"): "lightning ThroughputMonitor state",
    ("run/throughput.py", "_compute"): "lightning ThroughputMonitor hook, overridden",
    # RunLogger (a TensorBoardLogger) waits for a later second before its writer exists
    ("run/loggers.py", "_experiment"): "lightning TensorBoardLogger writer, None until made",
    # not Lightning: argparse's option list (for "did you mean"), litdata's count of yielded
    # samples (the end of a resumed epoch), namedtuple's documented _replace, torch's
    # documented hook for loading buffers of another shape, and torchvision's STL-10 check
    # (files present, instead of hashing 2.6 GB on every split)
    ("run/console.py", "_actions"): "argparse.ArgumentParser",
    ("run/console.py", "_get_train_description"): "lightning RichProgressBar method, overridden",
    ("run/lightning_cli.py", "_RICH_AVAILABLE"): "lightning's test for rich, as for its own bar",
    ("data/streaming.py", "_num_samples_yielded_streaming"): "litdata StreamingDataLoader",
    ("tasks/patch_position.py", "_replace"): "typing.NamedTuple",
    ("models/projection.py", "_load_from_state_dict"): "torch.nn.Module hook, overridden",
    ("data/catalog.py", "_check_integrity"): "torchvision.datasets.STL10 method, overridden",
}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def trees() -> dict[str, ast.Module]:
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text()) for p in PACKAGE.rglob("*.py")}


def own_names(modules: dict[str, ast.Module]) -> set[str]:
    """Every name cpc defines: functions, classes, assigned names and arguments, and
    attributes it sets on ``self``/``cls``."""
    names = set()
    for tree in modules.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
    return names


def foreign_accesses(modules: dict[str, ast.Module]) -> set[tuple[str, str]]:
    """``(file, name)`` of private attributes and imports that cpc does not define."""
    own, found = own_names(modules), set()
    for file, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr) and node.attr not in own:
                found.add((file, node.attr))
            elif (  # getattr(x, "_name"), hasattr, setattr
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and private(node.args[1].value)
                and node.args[1].value not in own
            ):
                found.add((file, node.args[1].value))
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] == "cpc":
                    continue
                parts = node.module.split(".")
                found.update((file, part) for part in parts if private(part))
                found.update((file, a.name) for a in node.names if private(a.name))
    return found


def foreign_overrides() -> set[tuple[str, str]]:
    """``(file, name)`` of private methods of a library base class that a cpc class defines."""
    found = set()
    for info in pkgutil.walk_packages(cpc.__path__, "cpc."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        file = str(Path(inspect.getfile(module)).relative_to(PACKAGE))
        for cls in vars(module).values():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            bases = [b for b in cls.__mro__[1:] if not b.__module__.startswith("cpc")]
            for name, value in vars(cls).items():
                method = inspect.isfunction(getattr(value, "__func__", value))  # static too
                if private(name) and method and any(name in vars(base) for base in bases):
                    found.add((file, name))
    return found


def test_cpc_uses_no_private_api_beyond_the_listed_ones():
    modules = trees()
    used = foreign_accesses(modules) | foreign_overrides()
    assert used - ALLOWED.keys() == set(), "new private API use: replace it, or list it with why"
    assert ALLOWED.keys() - used == set(), "listed but no longer used: remove from ALLOWED"
    frames = [f for f, tree in modules.items() if "currentframe" in ast.dump(tree)]
    assert frames == [], "no caller-frame inspection"


def test_the_check_sees_private_uses():
    """The checks find what they are for (a check that finds nothing proves nothing)."""
    code = (
        "from lightning.fabric.connector import _PRECISION_INPUT\n"
        "from lightning.pytorch.loops import _private_module\n"
        "def f(trainer):\n"
        "    trainer.fit_loop._batches_that_stepped = 1\n"
        "    return getattr(trainer, '_ours') or getattr(trainer, '_theirs')\n"
        "class C:\n"
        "    def g(self):\n"
        "        self._ours = 2\n"
        "        return self._ours\n"
    )
    assert foreign_accesses({"x.py": ast.parse(code)}) == {
        ("x.py", "_PRECISION_INPUT"),
        ("x.py", "_private_module"),
        ("x.py", "_batches_that_stepped"),
        ("x.py", "_theirs"),
    }
