"""Low-rank adapters (LoRA) for fine-tuning the span reader: small deltas, small shipped file.

Every linear layer of the encoder keeps its frozen weight ``W`` and learns ``B @ A`` (rank
``r``) beside it, so what is shipped is ``A`` and ``B`` (``B`` already scaled), and loading adds
``B @ A`` to ``W`` once (:func:`qa.ask.span_model.qa_model`).

Imported only by the training command (it imports torch at the top).
"""

from __future__ import annotations

from typing import Any

import torch

from qa.ask.span_model import LORA_A, LORA_B


class LoRALinear(torch.nn.Module):
    """``base(x) + scale * x A^T B^T``, with ``base`` frozen and ``B`` starting at zero."""

    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.lora_a = torch.nn.Parameter(torch.randn(rank, base.in_features) / rank**0.5 * 0.1)
        self.lora_b = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen layer plus the low-rank delta."""
        delta: torch.Tensor = (x @ self.lora_a.T) @ self.lora_b.T
        out: torch.Tensor = self.base(x) + delta * self.scale
        return out


def add_adapters(model: Any, rank: int, alpha: float) -> dict[str, LoRALinear]:
    """Wrap every linear layer of the encoder; returns the adapters by module name."""
    encoder = model.base_model.encoder
    prefix = f"{model.base_model_prefix}.encoder."
    adapters: dict[str, LoRALinear] = {}
    for name, module in list(encoder.named_modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, torch.nn.Linear):
                adapter = LoRALinear(sub, rank, alpha)
                setattr(module, child, adapter)
                adapters[f"{prefix}{name}.{child}" if name else f"{prefix}{child}"] = adapter
    return adapters


def adapter_tensors(adapters: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """The factors to ship: ``A`` and ``B`` scaled, so that the delta is ``B @ A``."""
    out: dict[str, torch.Tensor] = {}
    for name, a in adapters.items():
        out[name + LORA_A] = a.lora_a.detach().clone()
        out[name + LORA_B] = (a.lora_b.detach() * a.scale).clone()
    return out
