"""Pretext tasks on a shared patch encoder: each turns images into a loss (see ``base.Task``)."""

from cpc.tasks.base import GridEncoder, Task, TaskFactory
from cpc.tasks.cpc import CPCTask
from cpc.tasks.jigsaw import JigsawTask
from cpc.tasks.patch_position import PatchPositionTask
from cpc.tasks.rotation import RotationTask

__all__ = [
    "CPCTask",
    "JigsawTask",
    "GridEncoder",
    "PatchPositionTask",
    "RotationTask",
    "Task",
    "TaskFactory",
]
