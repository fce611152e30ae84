"""CutMix (Yun et al. 2019): paste a box from a partner image; labels mix by the pasted area.

λ ~ Beta(α, α); the box has side fractions √(1−λ) (area 1−λ) around a uniformly drawn centre and
is clipped at the borders, so the label weight is recomputed from the pixels actually pasted:
ỹ = λ'·y + (1−λ')·y[perm] with λ' = 1 − box area / image area. Box rounding follows the authors'
code and torchvision's ``v2.CutMix``: half-sides ⌊½·√(1−λ)·H⌋ and ⌊½·√(1−λ)·W⌋.
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from bench.errors import ConfigError
from bench.regularizers._mixing import PairMixing


class CutMix(PairMixing):
    name = "cutmix"
    population = "per_member"  # a batch transform only: each member's slice, its own draws

    def __init__(self, alpha: float = 1.0, per_sample: bool = False) -> None:
        super().__init__(alpha, per_sample)

    def setup(self, datamodule: L.LightningDataModule, model: nn.Module) -> None:
        super().setup(datamodule, model)
        if not datamodule.is_image:
            raise ConfigError(
                f"regularizer {self.name} needs image data, not dataset={datamodule.name}"
            )

    def mix(
        self, x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = x.shape
        boxes = n if self.per_sample else 1  # one box for the whole batch, as in the paper
        side = (1 - lam[:boxes]).clamp(min=0).sqrt()
        half_h = (0.5 * side * h).floor().long()
        half_w = (0.5 * side * w).floor().long()
        cy = torch.randint(h, (boxes,), device=x.device)
        cx = torch.randint(w, (boxes,), device=x.device)
        rows = torch.arange(h, device=x.device)
        cols = torch.arange(w, device=x.device)
        in_rows = (rows >= cy[:, None] - half_h[:, None]) & (rows < cy[:, None] + half_h[:, None])
        in_cols = (cols >= cx[:, None] - half_w[:, None]) & (cols < cx[:, None] + half_w[:, None])
        box = (in_rows[:, :, None] & in_cols[:, None, :]).expand(n, h, w)  # (N, H, W)
        mixed = torch.where(box[:, None], partner, x)
        weight = 1 - box.flatten(1).to(lam.dtype).mean(1)
        return mixed, weight
