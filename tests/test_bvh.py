"""BVH reader: real Bandai files, hand-written hierarchies with known FK, and malformed input."""
from __future__ import annotations

import lzma
import re
from pathlib import Path

import numpy as np
import pytest

from mocap.bvh import parse_bvh, read_bvh, read_bvh_header

BANDAI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mocap" / "bandai"
WALK = BANDAI / "dataset-2_walk_normal_001.bvh.xz"
needs_data = pytest.mark.skipif(not WALK.is_file(), reason="shared Bandai data not present")

SIX = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Arm
  {
    OFFSET 10 0 0
    CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 5 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.0333333
1 2 3 0 0 0 10 0 0 0 0 0
1 2 3 90 0 0 4 0 0 0 0 90
"""

THREE = """HIERARCHY
ROOT root
{
\tOFFSET 0 1 0
\tCHANNELS 3 Yrotation Xrotation Zrotation
\tJOINT a
\t{
\t\tOFFSET 0 2 0
\t\tCHANNELS 3 Xrotation Yrotation Zrotation
\t\tJOINT b
\t\t{
\t\t\tOFFSET 0 0 3
\t\t\tCHANNELS 3 Zrotation Yrotation Xrotation
\t\t\tEnd Site
\t\t\t{
\t\t\t\tOFFSET 1 0 0
\t\t\t}
\t\t}
\t}
}
MOTION
Frames: 1
Frame Time: 0.01
0 0 0 90 0 0 0 0 0
"""


@needs_data
def test_real_bandai_file_layout_and_fk() -> None:
    bvh = read_bvh(WALK)
    header_frames = int(re.search(r"Frames:\s*(\d+)", lzma.open(WALK, "rt").read()).group(1))
    assert len(bvh.names) == 22 and bvh.num_channels == 132
    assert bvh.num_frames == header_frames == bvh.motion.shape[0]
    assert bvh.names[:3] == ["joint_Root", "Hips", "Spine"] and bvh.parents[:3] == [-1, 0, 1]
    assert abs(bvh.fps - 30.0) < 1e-3
    assert bvh.channels[1] == ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
    assert len(bvh.end_sites) == 5
    pos, rot = bvh.fk(end_sites=True)
    assert pos.shape == (bvh.num_frames, 27, 3) and rot.shape == (bvh.num_frames, 22, 3, 3)
    head = pos[:, bvh.index("Head"), 1]
    assert 125 < head.min() and head.max() < 150  # cm, per the data card
    feet = pos[:, [bvh.index("Toes_L"), bvh.index("Toes_R")], 1]
    assert feet.min() > -1.0 and feet.min() < 10.0
    np.testing.assert_allclose(np.einsum("...ij,...kj->...ik", rot, rot), np.broadcast_to(np.eye(3), rot.shape),
                               atol=1e-9)
    assert read_bvh_header(WALK) == bvh.names


def test_six_channel_fk_and_position_override(tmp_path: Path) -> None:
    bvh = parse_bvh(SIX, "six.bvh")
    assert bvh.names == ["Hips", "Arm"] and bvh.num_channels == 12 and bvh.end_sites == [1]
    pos, rot = bvh.fk(end_sites=True)
    # Frame 0: no rotation; Arm's position channels (10, 0, 0) equal its OFFSET.
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [11, 2, 3], [11, 7, 3]], atol=1e-9)
    # Frame 1: root Z 90 deg, Arm position channel (4, 0, 0) overrides OFFSET, Arm Y 90 deg.
    np.testing.assert_allclose(pos[1, 1], [1, 6, 3], atol=1e-9)
    # End site (0, 5, 0) in Arm's frame: Rz(90) @ Ry(90) @ (0, 5, 0) = Rz(90) @ (0, 5, 0) = (-5, 0, 0).
    np.testing.assert_allclose(pos[1, 2], [-4, 6, 3], atol=1e-9)
    np.testing.assert_allclose(rot[1, 0], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-9)
    # The same file compressed with xz reads identically.
    path = tmp_path / "six.bvh.xz"
    with lzma.open(path, "wt") as fh:
        fh.write(SIX)
    np.testing.assert_array_equal(read_bvh(path).motion, bvh.motion)


def test_three_channel_orders_compose_in_file_order() -> None:
    bvh = parse_bvh(THREE, "three.bvh")
    assert [len(c) for c in bvh.channels] == [3, 3, 3] and abs(bvh.fps - 100) < 1e-9
    pos, _ = bvh.fk(end_sites=True)
    # a: Xrotation 90 turns its child offset (0, 0, 3) into (0, -3, 0); end site (1, 0, 0) stays along X.
    np.testing.assert_allclose(pos[0], [[0, 1, 0], [0, 3, 0], [0, 0, 0], [1, 0, 0]], atol=1e-9)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.rsplit("\n", 2)[0] + "\n", "truncated"),  # last frame line removed
        (lambda t: t.replace("1 2 3 90 0 0 4 0 0 0 0 90", "1 2 3 90 0 0 4 0 0 0 0"), "has 11 values"),
        (lambda t: t.replace("1 2 3 90 0 0 4", "1 2 3 9x0 0 0 4"), "bad number '9x0'"),
        (lambda t: t.replace("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation\n  JOINT",
                             "CHANNELS 7 Xposition Yposition Zposition Zrotation Xrotation Yrotation\n  JOINT"),
         "lists fewer"),
        (lambda t: t.replace("    }\n  }\n}", "    }\n  }\n"), "unbalanced braces"),
        (lambda t: t.replace("Frames: 2", "Frames: 3"), "truncated"),
        (lambda t: t.replace("Frames: 2", "Frames: 1"), "header says 1 frames"),
        (lambda t: t.replace("Zrotation Xrotation Yrotation\n  JOINT", "Zrotation Xrotation Wrotation\n  JOINT"),
         "unknown channel"),
    ],
)
def test_malformed_input_names_file_and_problem(mutate, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_bvh(mutate(SIX), "bad.bvh")
    assert "bad.bvh" in str(info.value)


def test_error_reports_line_number() -> None:
    text = SIX.replace("1 2 3 90 0 0 4", "1 2 3 9x0 0 0 4")
    with pytest.raises(ValueError, match=r"bad\.bvh:20:"):
        parse_bvh(text, "bad.bvh")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.bvh.xz"
    path.write_bytes(b"not xz at all")
    with pytest.raises(ValueError, match="broken.bvh.xz"):
        read_bvh(path)
