"""`CausalMocap.step` as a module of flat tensors: the exact signature of the exported graph.

Inputs (x, omega, *state in `state_shapes` order) and outputs (*OUTPUT_NAMES, *`<state>_out`), all batch-first.
"""
from __future__ import annotations

import torch
from torch import nn

from mocap.model import INPUT_NAMES, OUTPUT_NAMES, CausalMocap, state_shapes
from mocap.model.state import OMEGA_DIM, state_output_name


class StepModule(nn.Module):
    def __init__(self, model: CausalMocap) -> None:
        super().__init__()
        self.model = model
        self.state_names: tuple[str, ...] = tuple(state_shapes(model.config))

    @property
    def input_names(self) -> list[str]:
        return list(INPUT_NAMES) + list(self.state_names)

    @property
    def state_outputs(self) -> dict[str, str]:
        return {name: state_output_name(name) for name in self.state_names}

    @property
    def output_names(self) -> list[str]:
        return list(OUTPUT_NAMES) + list(self.state_outputs.values())

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Zero state and small random inputs (B = batch), on the model's device."""
        device = next(self.model.parameters()).device
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, self.model.config.input_dim, generator=gen).to(device)
        omega = torch.zeros(batch, OMEGA_DIM, device=device)
        state = self.model.initial_state(batch, device)
        return (x, omega, *(state[name] for name in self.state_names))

    def forward(self, x: torch.Tensor, omega: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(state) != len(self.state_names):
            raise ValueError(f"expected {len(self.state_names)} state tensors {self.state_names}, got {len(state)}")
        outputs, new_state = self.model.step(x, omega, dict(zip(self.state_names, state)))
        return tuple(outputs[n] for n in OUTPUT_NAMES) + tuple(new_state[n] for n in self.state_names)
