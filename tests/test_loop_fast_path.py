"""The loop's fast paths give the messages and matches of the code they replaced, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from mocap.rotations import axis_angle_to_matrix, matrix_to_quaternion, quaternion_to_axis_angle
from mocap.skeleton import NUM_JOINTS
from stream.multi_tracker import _median
from stream.pose_frame import REQUIRED_OUTPUTS, person_outputs, pose_message
from stream.protocol import PoseMessage, encode


def _reference_message(outputs, *, kp2d, index=0, **kw) -> PoseMessage:
    """pose_message as it was: float64 copies of every output, then PoseMessage.from_arrays."""
    person = person_outputs(outputs, index)
    rotmat = person["pose_rotmat"]
    cam_root = np.asarray(outputs["cam_root_rotmat"])[index].astype(np.float64) if "cam_root_rotmat" in outputs else None
    with_cam = rotmat if cam_root is None or not np.all(np.isfinite(cam_root)) else np.concatenate((rotmat, cam_root[None]))
    quat = matrix_to_quaternion(with_cam)
    aa = quaternion_to_axis_angle(quat)
    arrays = {"pose_aa": aa[:NUM_JOINTS], "pose_quat": quat[:NUM_JOINTS], "betas": person["betas"],
              "root_trans": person["root_trans"], "joints": person["joints"],
              "contact": np.clip(person["contact"], 0.0, 1.0), "cam_trans": person["cam_trans"]}
    if len(aa) == NUM_JOINTS + 1:
        arrays["cam_root_aa"] = aa[NUM_JOINTS]
    if kp2d is not None:
        kp = np.asarray(kp2d, dtype=np.float64)
        arrays["kp2d"] = np.where(np.isfinite(kp), kp, 0.0)
    return PoseMessage.from_arrays(**kw, **arrays)


def _outputs(rng: np.random.Generator, batch: int, dtype: type) -> dict[str, np.ndarray]:
    out = {name: (rng.standard_normal((batch,) + shape) * 3).astype(dtype) for name, shape in REQUIRED_OUTPUTS.items()}
    out["pose_rotmat"] = np.asarray(axis_angle_to_matrix(rng.standard_normal((batch, NUM_JOINTS, 3)) * 2)).astype(dtype)
    out["cam_root_rotmat"] = np.asarray(axis_angle_to_matrix(rng.standard_normal((batch, 3)))).astype(dtype)
    out["contact"] = (rng.random((batch, 4)) * 1.4 - 0.2).astype(dtype)  # some outside [0, 1]: clipped
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("with_cam", [True, False, "nan"])
def test_pose_message_equals_the_reference_conversion(dtype: type, with_cam: object) -> None:
    rng = np.random.default_rng(7)
    for trial in range(20):
        outputs = _outputs(rng, 2, dtype)
        if with_cam is False:
            del outputs["cam_root_rotmat"]
        elif with_cam == "nan":
            outputs["cam_root_rotmat"][:, 0, 0] = np.nan
        kp2d = (rng.random((21, 3)) * [640, 480, 1]).astype(np.float32)
        kp2d[rng.random(21) < 0.2] = np.nan
        for index in (0, 1):
            kw = dict(seq=trial, track=3, t_capture=1.25, model="m@g0", status="init" if trial % 2 else "tracking")
            for kp in (kp2d, None):
                fast = pose_message(outputs, kp2d=kp, index=index, **kw)
                ref = _reference_message(outputs, kp2d=kp, index=index, **kw)
                assert encode(fast) == encode(ref)


def test_pose_message_refuses_what_the_reference_refuses() -> None:
    outputs = _outputs(np.random.default_rng(1), 1, np.float32)
    outputs["betas"][0, 3] = np.inf
    with pytest.raises(ValueError, match="betas.*non-finite"):
        pose_message(outputs, seq=0, track=0, t_capture=0.0, kp2d=None, model="m")
    outputs["betas"][0, 3] = 0.0
    del outputs["joints"]
    with pytest.raises(ValueError, match="joints.*missing"):
        pose_message(outputs, seq=0, track=0, t_capture=0.0, kp2d=None, model="m")


def test_median_is_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    for _ in range(3000):
        n = int(rng.integers(1, 22))
        values = (rng.random(n) * rng.random() * 100).astype(np.float32 if rng.random() < 0.5 else np.float64)
        assert _median(values, n) == float(np.median(values))


@pytest.mark.parametrize("camera", [None, "cam1"])
def test_publisher_sends_topic_and_payload_as_before(camera: str | None) -> None:
    """The cached topic and the two direct sends put [topic, encode(msg)] on the wire, as send_multipart did."""
    import zmq

    from stream.publisher import Publisher, camera_topic
    from stream.protocol import decode, topic

    with Publisher("tcp://127.0.0.1:*", hwm=100, camera_id=camera, watch_subscribers=True) as pub:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(pub.endpoint)
            assert pub.wait_for_subscriber(10.0)
            tracks = [0, 7, 0, 12, 7]
            for seq, track in enumerate(tracks):
                assert pub.publish(PoseMessage(seq=seq, track=track, t_capture=1.0, status="lost", model="m"))
            for seq, track in enumerate(tracks):
                assert sub.poll(5000)
                key, payload = sub.recv_multipart()
                assert key == (topic(track) if camera is None else camera_topic(camera, track))
                msg = decode(payload)
                assert (msg.seq, msg.track, msg.status) == (seq, track, "lost") and msg.t_publish > 0
            with pytest.raises(ValueError):
                pub.publish(PoseMessage(seq=9, track=-1, t_capture=1.0, status="lost"))
            assert pub.sent == len(tracks)
        finally:
            sub.close(linger=0)
            ctx.term()
