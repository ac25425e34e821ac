"""Test-time fitting of the network's body to the 2D evidence (numpy, on the frame path): `refine_step`."""
from mocap.fitting.refine import Refined, RefineConfig, TrackState, refine_person
from mocap.fitting.step import StepResult, refine_step

__all__ = ["RefineConfig", "Refined", "StepResult", "TrackState", "refine_person", "refine_step"]
