"""VMC protocol bridge: the pose stream -> OSC bundles that VMC receivers (VSeeFace, EVMC4U, VMC4B) apply to avatars.

    python -m stream.vmc --sub tcp://127.0.0.1:5556 --to 127.0.0.1:39539 [--track N]
    python run_live.py --vmc 127.0.0.1:39539          (the same, inside the live loop)

Conversion and conventions: `stream.vmc.convert`; bundles and track choice: `stream.vmc.sender`; avatar
set-up: docs/avatars.md.
"""
from stream.vmc.convert import HUMAN_BONES, HumanoidConverter, UnityPose
from stream.vmc.sender import DEFAULT_PORT, VmcSender, build_bundle, parse_address

__all__ = ["DEFAULT_PORT", "HUMAN_BONES", "HumanoidConverter", "UnityPose", "VmcSender", "build_bundle",
           "parse_address"]
