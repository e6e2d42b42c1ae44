"""Conditioned LSTM: the setting is concatenated to the audio at every sample.

    s_t = LSTM([x_t; c_t], s_{t-1}),   y_t = head(h_t)      (s_0 = 0)

A constant setting adds ``W_ih[:, 1:] c`` to the gate biases, so it bakes into a plain LSTM snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from knobcap.models.architectures import check_config
from knobcap.models.base import ParametricModel


class ConditionedLSTM(ParametricModel):
    """A recurrent parametric model (receptive field 1, zero initial state)."""

    architecture = "lstm"

    def __init__(self, config: Mapping[str, Any]) -> None:
        clean = check_config("lstm", config)
        super().__init__(clean)
        hidden = clean["hidden_size"]
        self.lstm = nn.LSTM(1 + self.n_controls, hidden, clean["num_layers"], batch_first=True)
        self.head = nn.Linear(hidden, 1)

    @property
    def receptive_field(self) -> int:
        return 1

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        cond = self.condition(x, c).transpose(1, 2)  # (B, T, 1 + C)
        out, _ = self.lstm(cond)
        return self.head(out)[..., 0]
