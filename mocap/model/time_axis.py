"""The two time layouts the one network path runs in: one frame per call (the step) or a (B, T) window (training).

The path is written once against `TimeAxis`; only these four operations know whether a time axis exists.
Memory-free functions run on whatever leading dims they get, so a window runs them for all frames at once.
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn

Tensors = tuple[torch.Tensor, ...]
#: One frame of a recurrence: (inputs of this frame, carry from the previous one) -> (outputs, carry).
FrameFn = Callable[[Tensors, Tensors], tuple[Tensors, Tensors]]


class TimeAxis(Protocol):
    def encode(self, encoder: nn.Module, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence encoder on x (B, [T,] D) with batch-first state h."""
        ...

    def scan(self, fn: FrameFn, inputs: Tensors, carry: Tensors) -> tuple[Tensors, Tensors]:
        """A recurrence over the frames: fn once per frame, the carry threaded through."""
        ...

    def previous(self, before: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Each frame's value of the frame before it: `before` (the state) for the first frame."""
        ...

    def last(self, values: torch.Tensor) -> torch.Tensor:
        """The last frame's value (what the state carries on)."""
        ...


class FrameAxis:
    """Tensors are (B, ...): one frame, no time axis (the streaming graph, exported to ONNX)."""

    def encode(self, encoder: nn.Module, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        context, h_new = encoder(x[:, None], h)
        return context[:, 0], h_new

    def scan(self, fn: FrameFn, inputs: Tensors, carry: Tensors) -> tuple[Tensors, Tensors]:
        return fn(inputs, carry)

    def previous(self, before: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return before

    def last(self, values: torch.Tensor) -> torch.Tensor:
        return values


class WindowAxis:
    """Tensors are (B, T, ...): the encoder GRU runs over the window at once, recurrences loop over its frames."""

    def encode(self, encoder: nn.Module, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return encoder(x, h)

    def scan(self, fn: FrameFn, inputs: Tensors, carry: Tensors) -> tuple[Tensors, Tensors]:
        # unbind, not [:, t]: its backward stacks the frames' gradients once instead of filling T full-size zeros.
        outputs = []
        for frame in zip(*(v.unbind(1) for v in inputs)):
            out, carry = fn(frame, carry)
            outputs.append(out)
        return tuple(torch.stack(o, dim=1) for o in zip(*outputs)), carry

    def previous(self, before: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return torch.cat((before[:, None], values[:, :-1]), dim=1)

    def last(self, values: torch.Tensor) -> torch.Tensor:
        return values[:, -1]


FRAME = FrameAxis()
WINDOW = WindowAxis()
