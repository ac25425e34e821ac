"""Self-supervised test-time adaptation of the causal model (issue 11): losses, one gated cycle, rollback,
and the causal replay used by `python -m mocap.eval --adapt`. Pure torch; the live worker is stream/adaptation."""
from .cycle import AdaptConfig, Adapter, CycleResult, GateDecision, Window, apply_weights, full_state_dict, gate
from .losses import AdaptWeights
from .rollback import RegressionMonitor, WeightHistory

__all__ = ["AdaptConfig", "AdaptWeights", "Adapter", "CycleResult", "GateDecision", "RegressionMonitor",
           "WeightHistory", "Window", "apply_weights", "full_state_dict", "gate"]
