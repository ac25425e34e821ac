"""Slow background self-supervised adaptation of the live engine (issue 11): a ring buffer the loop fills, a
worker (thread or process) running `mocap.adapt` cycles, gate + `engine.swap`, rollback, per-profile persistence."""
from .buffer import BufferedStep, StepRing
from .profile import ProfileError, ProfileStore, default_profile_dir
from .runner import RunnerSpec
from .worker import AdaptationWorker

__all__ = ["AdaptationWorker", "BufferedStep", "ProfileError", "ProfileStore", "RunnerSpec", "StepRing",
           "default_profile_dir"]
