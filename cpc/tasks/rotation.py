"""Rotation prediction: classify by how much an image was turned (0, 90, 180 or 270 degrees).

Gidaris, Singh and Komodakis, 2018, "Unsupervised Representation Learning by Predicting Image
Rotations" (RotNet). To tell which way is up, the encoder has to find the object and
recognise its type and pose (their Sec. 2.2 argues this). Multiples of 90 degrees are exact
pixel permutations (``torch.rot90``), so unlike other angles they leave no interpolation
artefact to recognise the rotation by (their reason for choosing them).

images (B, C, S, S) -> ImageAugment (training only) -> rotate image i by k_i * 90 degrees
-> latent grid averaged over its cells (B, D) -> MLP head -> 4 logits -> cross entropy against k.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cpc.models.augment import ImageAugment
from cpc.models.heads import mlp_head
from cpc.tasks.base import GridEncoder, Task

#: Rotation classes: label k means the image was turned by k * 90 degrees counter-clockwise.
NUM_ROTATIONS = 4


def rotate(images: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Turn image ``i`` by ``k[i] * 90`` degrees counter-clockwise, batch-wise.

    The batch is turned by each of the four angles with ``torch.rot90`` and each image picks
    its own with one index: no per-sample loop, no host-device sync (index groups found with
    ``nonzero`` would need one per angle), and image ``i`` stays at position ``i``. The four
    copies of the input batch cost little next to the encoder.

    Args:
        images: ``(B, C, S, S)``, square (a quarter turn of a non-square image changes its
            shape, and it could not share a batch with the others).
        k: ``(B,)`` integer rotations in ``{0, 1, 2, 3}``.

    Returns:
        ``(B, C, S, S)``: ``out[i] == torch.rot90(images[i], k[i], dims=(-2, -1))``.
    """
    check_square(images)
    if k.shape != images.shape[:1] or k.is_floating_point():
        raise ValueError(
            f"k must be an integer tensor of shape ({images.shape[0]},), got {k.dtype} "
            f"{tuple(k.shape)}"
        )
    turned = torch.stack([torch.rot90(images, q, dims=(-2, -1)) for q in range(NUM_ROTATIONS)])
    # (4, B, C, S, S) -> (B, C, S, S): image i from rotation k[i]
    return turned[k, torch.arange(images.shape[0], device=images.device)]


def all_rotations(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image in all four rotations, as RotNet trains: ``(4B, C, S, S)`` and labels ``(4B,)``.

    Block ``k`` (rows ``k*B`` to ``(k+1)*B - 1``) holds the whole batch turned by ``k * 90``
    degrees, in the original order.
    """
    check_square(images)
    rotated = [torch.rot90(images, k, dims=(-2, -1)) for k in range(NUM_ROTATIONS)]
    labels = torch.arange(NUM_ROTATIONS, device=images.device)  # (4,)
    # 4 x (B, C, S, S) -> (4B, C, S, S); labels (4,) -> (4B,) = [0]*B + [1]*B + ...
    return torch.cat(rotated), labels.repeat_interleave(images.shape[0])


def check_square(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(
            f"rotation prediction needs square images (B, C, S, S), got {tuple(images.shape)}: "
            "crop or resize the data to square, or leave RotationTask out of the task list"
        )


class RotationTask(Task):
    """RotNet: predict which of 4 rotations was applied, from the pooled image features.

    Each training image gets one random rotation (``all_rotations=False``, the default) or
    appears in all four (``all_rotations=True``, as in RotNet: 4x the encoder cost, and
    every batch balanced over the 4 classes). Evaluation has no randomness, so
    ``val/rotation/acc`` is comparable between epochs: image ``i`` is turned by ``i mod 4``
    quarter turns, or, with ``all_rotations``, appears in all four as in training.

    Only square images can be turned by 90 degrees within one batch; other shapes raise a
    ``ValueError`` on the first batch.

    Args:
        num_features: latent size D of the encoder (given by the module). The head sees the
            latent grid's mean, whatever the encoder's compact feature (``pool_size``,
            ``compact_dim``) is, so the task trains the same network under every config.
        hidden: width of the head's hidden layer (Linear -> ReLU -> Linear to 4 logits);
            0 for a linear head. With a hidden layer the head, not the encoder's last
            layer, can hold what only rotation needs (the argument for SimCLR's projection
            head); RotNet puts its classifier on top of convolutional blocks.
        all_rotations: use all 4 rotations of every image instead of one random one.
        augment: applied to the images ``(B, C, S, S)`` in training, before rotating; default
            ``ImageAugment()`` (2-pixel translation, horizontal flip), which keeps the head from
            memorising pixel layouts; ``nn.Identity()`` disables. A left-right flip leaves an
            image upright, so it never contradicts the label.
        weight: factor of this loss in the total.

    Example:
        >>> from cpc.models.encoder import ResNetEncoder
        >>> encoder = ResNetEncoder(width=8)
        >>> task = RotationTask(encoder.num_features)
        >>> sorted(task(encoder, torch.rand(4, 1, 28, 28)))
        ['acc', 'loss']
    """

    name = "rotation"

    def __init__(
        self,
        num_features: int,
        hidden: int = 128,
        all_rotations: bool = False,
        augment: nn.Module | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__(weight)
        if hidden < 0:
            raise ValueError(f"hidden must be >= 0 (0: a linear head), got {hidden}")
        self.all_rotations = all_rotations
        self.augment = augment if augment is not None else ImageAugment()
        self.head = mlp_head(num_features, NUM_ROTATIONS, hidden)

    def make_examples(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, C, S, S)`` -> rotated images ``(N, C, S, S)`` and labels ``(N,)``.

        N = 4B with ``all_rotations``, else B. Includes the training augmentation.
        """
        if self.training:
            images = self.augment(images)
        if self.all_rotations:
            return all_rotations(images)
        b = images.shape[0]
        if self.training:
            k = torch.randint(NUM_ROTATIONS, (b,), device=images.device)  # (B,)
        else:
            k = torch.arange(b, device=images.device) % NUM_ROTATIONS  # (B,) fixed for val
        return rotate(images, k), k

    def forward(self, encoder: GridEncoder, images: torch.Tensor) -> dict[str, torch.Tensor]:
        inputs, labels = self.make_examples(images)  # (N, C, S, S), (N,)
        features = encoder.forward_features(inputs).mean(dim=(2, 3))  # (N, D, Gh, Gw) -> (N, D)
        logits = self.head(features)  # (N, 4)
        return {
            "loss": F.cross_entropy(logits, labels),
            "acc": (logits.argmax(dim=1) == labels).float().mean(),
        }
