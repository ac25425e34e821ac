"""Automatic source-skeleton -> SMPL-24 joint mapping for any common humanoid BVH (no mapping file).

Why not a table per rig: the same word means different joints in different rigs ("LeftShoulder" is the collar in
Mixamo/MotionBuilder and the upper arm in CMU's 3dsMax conversion; "hip" is the pelvis in Poser and the thigh in
CMU's "LeftHip"), and spines have 1 to 5 joints. So names only say *which limb joint on which side* a joint is;
the skeleton's structure says the rest:
- names: side (Left*/Right*, *_l/*_r, *.L/*.R, l*/r* as in Poser and CMU's ASF names, L_/R_) and limb part
  (thigh, knee, ankle, toe; collar, upper arm, forearm, hand) for every family we know (CMU ASF and its
  3dsMax/MotionBuilder conversions, Mixamo, Poser/DAZ, Rokoko, Unreal mannequin, Blender Rigify/metarig,
  Reallusion CC, Bandai via its preset);
- topology fallback when names do not give four limbs: the five chain ends farthest apart along the tree
  (hands, feet, head; fingers and twist helpers end near them); the three that share
  the deepest common ancestor (the chest) are the arms and the head (the shortest), the other two are the legs; within a limb
  the two longest adjacent bones are thigh+shin or upper arm+forearm; left/right from where the knees and toes
  point (forward) and the up direction;
- in both cases the pelvis is the common ancestor of the legs and the chest, the chest (where the arms branch)
  is spine3, spine1/spine2 are the chain joints nearest SMPL's proportions, the neck is the first joint above the
  chest towards the head;
- joints a skeleton lacks are derived: an End Site becomes the head (Poser), the toe or the wrist.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from mocap.bvh import Bvh
from mocap.retarget_presets import BANDAI, REQUIRED, resolve_preset

#: SMPL pelvis -> spine1 / spine2 path length as a fraction of pelvis -> spine3 (rest pose), and the tolerance for
#: accepting a source spine joint there.
_SPINE_FRACTIONS = (("spine1", 0.36), ("spine2", 0.82))
_SPINE_TOLERANCE = 0.22
#: Bones shorter than this fraction of the leg length count as zero length (CMU's LHipJoint, Unreal's roots).
_TINY = 0.02

_LIMB_PARTS: dict[str, tuple[str, ...]] = {
    "thigh": ("upleg", "upperleg", "thigh", "thighbend", "femur", "uleg", "hip"),
    "knee": ("leg", "lowerleg", "shin", "shinbend", "calf", "knee", "tibia", "loleg", "lleg"),
    "ankle": ("foot", "ankle"),
    "toe": ("toebase", "toe", "toes", "ball"),
    "collar": ("collar", "clavicle"),
    "shoulder": ("shoulder",),  # collar or upper arm: decided per side below
    "arm": ("arm", "upperarm", "uparm", "shldr", "shldrbend", "humerus"),
    "elbow": ("forearm", "forearmbend", "lowerarm", "loarm", "elbow", "radius"),
    "wrist": ("hand", "wrist"),
}
_PART_OF = {word: part for part, words in _LIMB_PARTS.items() for word in words}
#: Words that may follow a bare l/r prefix (Poser's lThigh, CMU ASF's lfemur, LHipJoint).
_PREFIX_WORDS = tuple(sorted(set(_PART_OF) | {"hipjoint", "buttock", "fingers", "thumb"}, key=len, reverse=True))
#: Helper bones that are never the main joint of a limb.
_HELPER = re.compile(r"twist|roll|share|nub|(?<!b)end$|finger|thumb|index|middle|ring|pinky|helper|corrective")
_RIG_PREFIXES = ("cc_base_", "rl_", "bip01_", "bip01 ", "bip001 ", "def-", "def_", "org-", "valvebiped.bip01_")
_FAMILY_RULES: tuple[tuple[str, re.Pattern], ...] = (
    ("mixamo", re.compile(r"^mixamorig\d*:", re.I)),
    ("reallusion-cc", re.compile(r"^cc_base_", re.I)),
    ("cmu-asf", re.compile(r"^[lr](femur|tibia|humerus|radius)$", re.I)),
    ("cmu-3dsmax", re.compile(r"^(LeftAnkle|LeftKnee|LeftCollar|Chest2)$", re.I)),
    ("cmu-motionbuilder", re.compile(r"^LHipJoint$", re.I)),
    ("poser-daz", re.compile(r"^[lr](shldr\w*|thigh\w*|shin|buttock|forearm\w*)$", re.I)),
    ("unreal", re.compile(r"^(thigh|calf|upperarm|lowerarm)_[lr]$", re.I)),
    ("blender-rigify", re.compile(r"^(DEF-|ORG-)?(thigh|shin|upper_arm|forearm)\.[LR](\.\d+)?$", re.I)),
    ("rokoko", re.compile(r"^(LeftThigh|LeftShin|Spine4)$", re.I)),
    ("mixamo-like", re.compile(r"^LeftUpLeg$", re.I)),
)


@dataclass
class AutoMapping:
    """family: detected naming family (or 'topology'); method: 'preset' | 'names' | 'topology';
    mapping {smpl_joint: source_joint} in `bvh` (which may carry joints promoted from End Sites);
    derived {smpl_joint: how it was obtained} for joints the file lacks."""

    family: str
    method: str
    mapping: dict[str, str]
    bvh: Bvh
    derived: dict[str, str] = field(default_factory=dict)


class _Tree:
    """Joints and End Sites of a BVH as one tree of nodes (End Site e is node J + e), first-frame geometry."""

    def __init__(self, bvh: Bvh) -> None:
        first = bvh.head(1)
        self.bvh, self.njoints = bvh, len(bvh.names)
        self.parents = list(bvh.parents) + list(bvh.end_sites)
        self.names = list(bvh.names) + [f"{bvh.names[p]}<end>" for p in bvh.end_sites]
        pos, _ = first.fk(end_sites=True)
        self.pos = pos[0]  # (N, 3) first-frame positions, file units
        off = np.concatenate((first.frame_offsets()[0], bvh.end_offsets.reshape(-1, 3)), 0)
        self.bone = np.linalg.norm(off, axis=-1)  # (N,) offset length = bone from parent
        self.bone[0] = 0.0
        self.children: list[list[int]] = [[] for _ in self.parents]
        for k, p in enumerate(self.parents):
            if p >= 0:
                self.children[p].append(k)
        self.depth = np.zeros(len(self.parents))  # path length from the body root (parents before children)
        for k, p in enumerate(self.parents):
            if p >= 0:
                self.depth[k] = self.depth[p] + self.bone[k]
        # Measure from the first branching node: a floor-level root above the hips (Unreal's root, Reallusion's
        # RL_BoneRoot) would otherwise add a metre to every chain and blur which chains share an ancestor.
        base = 0
        while len(self.children[base]) == 1 and self.children[base][0] < self.njoints:
            base = self.children[base][0]
        self.depth -= self.depth[base]

    def ancestors(self, k: int) -> list[int]:
        """k, its parent, ..., the root."""
        out = []
        while k >= 0:
            out.append(k)
            k = self.parents[k]
        return out

    def is_ancestor(self, a: int, k: int) -> bool:
        return a in self.ancestors(k)

    def lca(self, *nodes: int) -> int:
        common = set(self.ancestors(nodes[0]))
        for n in nodes[1:]:
            common &= set(self.ancestors(n))
        return max(common, key=lambda c: len(self.ancestors(c)))

    def path(self, a: int, k: int) -> list[int]:
        """Nodes strictly below ancestor a down to k (inclusive), top first."""
        chain = []
        while k != a:
            if k < 0:
                raise ValueError(f"{self.names[a]} is not above the node")
            chain.append(k)
            k = self.parents[k]
        return chain[::-1]

    def leaves(self) -> list[int]:
        return [k for k in range(len(self.parents)) if not self.children[k]]


# --- names ----------------------------------------------------------------------------------------------------------


def _strip(name: str) -> str:
    low = re.split(r"[:|]", name)[-1].strip().lower()
    for pre in _RIG_PREFIXES:
        if low.startswith(pre):
            low = low[len(pre):]
    return low


def side_and_part(name: str) -> tuple[str, str]:
    """('l' | 'r' | '', the rest of the name in lower case without separators): 'mixamorig:LeftUpLeg' ->
    ('l', 'upleg'); 'thigh.R' -> ('r', 'thigh'); 'lShldrBend' -> ('l', 'shldrbend'); 'spine_01' -> ('', 'spine01')."""
    low = _strip(name)
    side, rest = "", low
    m = (re.match(r"^(?:.*?[\s._-])?(left|right)[\s._-]*(.+)$", low) or re.match(r"^(.+?)[\s._-]+(l|r|left|right)(?:[\s._-]*\d+)?$", low)
         or re.match(r"^(l|r)[\s._-]+(.+)$", low) or re.match(r"^(.+?)(left|right)$", low))
    if m:
        a, b = m.group(1), m.group(2)
        side, rest = (a[0], b) if a in ("l", "r", "left", "right") else (b[0], a)
    else:
        m = re.match(r"^([lr])(" + "|".join(_PREFIX_WORDS) + r")(.*)$", low)
        if m:
            side, rest = m.group(1), m.group(2) + m.group(3)
    return side, re.sub(r"[\s._-]+", "", rest)


def limb_part(name: str) -> tuple[str, str]:
    """(side, limb part from _LIMB_PARTS or '') of a joint name; helpers (twist, fingers, ...) give ''."""
    side, rest = side_and_part(name)
    if not side or _HELPER.search(rest):
        return side, ""
    return side, _PART_OF.get(re.sub(r"\d+$", "", rest), "")


def detect_family(names: list[str]) -> str:
    """Naming family of a skeleton, for reports ('' when none of the known ones)."""
    for family, rule in _FAMILY_RULES:
        if any(rule.search(n) for n in names):
            return family
    return ""


def _map_limbs_by_names(tree: _Tree) -> dict[str, int]:
    """{smpl limb joint: node} from names; ValueError saying what is missing."""
    found: dict[tuple[str, str], list[int]] = {}
    for j in range(tree.njoints):
        side, part = limb_part(tree.names[j])
        if side and part:
            found.setdefault((side, part), []).append(j)
    out: dict[str, int] = {}
    for side in "lr":
        def pick(part: str) -> int | None:
            cands = found.get((side, part), [])
            return min(cands, key=lambda c: len(tree.ancestors(c))) if cands else None

        shoulder = pick("shoulder")
        collar, arm = pick("collar"), pick("arm")
        if shoulder is not None:  # "shoulder" is the collar unless the side has a collar/clavicle joint already
            if collar is None and arm is not None:
                collar = shoulder
            elif arm is None:
                arm = shoulder
        roles = {"hip": pick("thigh"), "knee": pick("knee"), "ankle": pick("ankle"), "foot": pick("toe"),
                 "collar": collar, "shoulder": arm, "elbow": pick("elbow"), "wrist": pick("wrist")}
        for chain in (("hip", "knee", "ankle", "foot"), ("collar", "shoulder", "elbow", "wrist")):
            prev = None
            for role in chain:
                node = roles[role]
                if node is None:
                    continue
                if prev is not None and not tree.is_ancestor(prev, node):
                    raise ValueError(f"{side}_{role} {tree.names[node]!r} is not below {tree.names[prev]!r}")
                out[f"{side}_{role}"] = node
                prev = node
    need = [f"{s}_{r}" for s in "lr" for r in ("hip", "knee", "ankle", "shoulder", "elbow")]
    missing = [j for j in need if j not in out]
    if missing:
        raise ValueError(f"names give no {missing}")
    return out


# --- topology -------------------------------------------------------------------------------------------------------


def _extremities(tree: _Tree, count: int = 5) -> list[int]:
    """The `count` leaves farthest apart along the tree (farthest-point sampling on bone-path distance): a
    humanoid's hands, feet and head. Fingers, toes, eyes and twist helpers end near one of those and are skipped."""
    leaves = [k for k in tree.leaves() if tree.depth[k] > 0]
    if len(leaves) < count:
        raise ValueError(f"found {len(leaves)} chain ends, a humanoid has {count} (2 legs, 2 arms, head)")

    def dist(a: int, b: int) -> float:
        return float(tree.depth[a] + tree.depth[b] - 2.0 * tree.depth[tree.lca(a, b)])

    chosen = [max(leaves, key=lambda k: tree.depth[k])]
    gaps = []
    while len(chosen) < count:
        best = max((k for k in leaves if k not in chosen), key=lambda k: min(dist(k, c) for c in chosen))
        gaps.append(min(dist(best, c) for c in chosen))
        chosen.append(best)
    if gaps[-1] < 0.25 * max(gaps):
        raise ValueError(f"found {count - 1} long chains, a humanoid has {count} (2 legs, 2 arms, head)")
    return chosen


def _two_long_bones(tree: _Tree, chain: list[int], tiny: float) -> tuple[int, int, int]:
    """Nodes (start, middle, end) of the two longest adjacent bones along chain (zero-length links skipped):
    thigh+shin -> (hip, knee, ankle); upper arm+forearm -> (shoulder, elbow, wrist)."""
    real = [k for k in chain if tree.bone[k] > tiny]  # nodes ending a real bone, top first
    if len(real) < 3:
        raise ValueError(f"topology: the chain to {tree.names[chain[-1]]!r} has fewer than three bones")
    # Bone i ends at real[i] and starts at real[i - 1]; the first bone leaves the attachment (pelvis, chest).
    i = max(range(1, len(real) - 1), key=lambda i: tree.bone[real[i]] + tree.bone[real[i + 1]])
    return real[i - 1], real[i], real[i + 1]


def _map_by_topology(tree: _Tree) -> tuple[dict[str, int], dict[str, int]]:
    """(limb joints, {'neck', 'head'}) from the tree's shape and first-frame pose (module doc)."""
    reps = _extremities(tree)
    trios = [(reps[a], reps[b], reps[c]) for a in range(5) for b in range(a + 1, 5) for c in range(b + 1, 5)]
    upper = list(max(trios, key=lambda t: tree.depth[tree.lca(*t)]))
    legs = [r for r in reps if r not in upper]
    chest = tree.lca(*upper)
    pelvis = tree.lca(legs[0], legs[1], chest)
    if chest == pelvis:
        raise ValueError("arms and head do not branch above the legs")
    up = tree.pos[chest] - 0.5 * (tree.pos[legs[0]] + tree.pos[legs[1]])
    up /= max(float(np.linalg.norm(up)), 1e-9)
    head_leaf = min(upper, key=lambda r: tree.depth[r])  # the head chain is far shorter than an arm (any pose)
    arms = [r for r in upper if r != head_leaf]
    leg_len = max(tree.depth[legs[0]] - tree.depth[pelvis], 1e-9)
    tiny = _TINY * leg_len
    leg_nodes = [_two_long_bones(tree, tree.path(pelvis, r), tiny) for r in legs]
    arm_nodes = [_two_long_bones(tree, tree.path(chest, r), tiny) for r in arms]
    # Forward: knees sit in front of the hip-ankle line when bent, toes point forward from the ankle.
    fwd = np.zeros(3)
    for (hip, knee, ankle), leaf in zip(leg_nodes, legs):
        fwd += tree.pos[knee] - 0.5 * (tree.pos[hip] + tree.pos[ankle])
        fwd += 2.0 * (tree.pos[leaf] - tree.pos[ankle])
    fwd -= (fwd @ up) * up
    if np.linalg.norm(fwd) < 1e-3 * leg_len:  # straight legs, no feet: assume the BVH habit of facing +Z
        fwd = np.array([0.0, 0.0, 1.0]) - up[2] * up
    lateral = np.cross(up, fwd)  # SMPL: Y up, facing +Z, left is +X = cross(Y, Z)
    out: dict[str, int] = {}
    for nodes, leaves, roles in ((leg_nodes, legs, ("hip", "knee", "ankle")),
                                 (arm_nodes, arms, ("shoulder", "elbow", "wrist"))):
        order = sorted(range(2), key=lambda i: -float(tree.pos[nodes[i][0]] @ lateral))  # left first
        for side, i in zip("lr", order):
            for role, node in zip(roles, nodes[i]):
                out[f"{side}_{role}"] = node
            if roles[0] == "hip":
                after = [k for k in tree.path(nodes[i][2], leaves[i]) if tree.bone[k] > tiny]
                if after:
                    out[f"{side}_foot"] = after[0]
            else:
                before = [k for k in tree.path(chest, nodes[i][0])[:-1] if tree.bone[k] > tiny]
                if before:
                    out[f"{side}_collar"] = before[-1]
    top = _neck_and_head(tree, tree.path(chest, head_leaf), tiny)
    return out, top


# --- shared: trunk, derived joints ----------------------------------------------------------------------------------


def _trunk(tree: _Tree, limbs: dict[str, int], top: dict[str, int] | None) -> dict[str, int]:
    """Pelvis, spine1-3, neck, head around the limbs; top: {'neck', 'head'} already found, or None to find them
    by name."""
    out = dict(limbs)
    arm_tops = [limbs.get(f"{s}_collar", limbs[f"{s}_shoulder"]) for s in "lr"]
    chest = tree.lca(*arm_tops)
    pelvis = tree.lca(limbs["l_hip"], limbs["r_hip"], chest)
    if chest == pelvis:
        raise ValueError("the arms do not branch above the legs")
    out["pelvis"] = pelvis
    if top is None:
        top = {}
        below = [k for k in range(tree.njoints) if k != chest and tree.is_ancestor(chest, k)]
        named = [(k, side_and_part(tree.names[k])) for k in below]
        necks = [k for k, (side, rest) in named if not side and "neck" in rest]
        heads = [k for k, (side, rest) in named if not side and rest == "head"]
        if necks:
            top["neck"] = min(necks, key=lambda k: len(tree.ancestors(k)))
        if heads:
            top["head"] = min(heads, key=lambda k: len(tree.ancestors(k)))
        if "neck" not in top and "head" in top:
            path = tree.path(chest, top["head"])[:-1]
            if path:
                top["neck"] = path[0]
        if "neck" not in top:  # no neck/head words (Rigify's spine.004 ...): the chain the arms do not use
            top = _head_chain(tree, chest, arm_tops)
    out.update(top)
    # chest is spine3 unless it is itself the neck (arms hanging off the neck joint)
    spine_top = chest
    if out.get("neck") == chest:
        spine_top = tree.parents[chest]
    if spine_top != pelvis:
        out["spine3"] = spine_top
        chain = tree.path(pelvis, spine_top)[:-1]
        total = tree.depth[spine_top] - tree.depth[pelvis]
        used: set[int] = set()
        for smpl, frac in _SPINE_FRACTIONS:
            cands = [k for k in chain if k not in used and tree.depth[k] - tree.depth[pelvis] > _TINY * 5 * total
                     and (not used or tree.is_ancestor(max(used, key=lambda u: tree.depth[u]), k))]
            if not cands:
                continue
            k = min(cands, key=lambda c: abs((tree.depth[c] - tree.depth[pelvis]) / total - frac))
            if abs((tree.depth[k] - tree.depth[pelvis]) / total - frac) <= _SPINE_TOLERANCE:
                out[smpl] = k
                used.add(k)
    else:
        out.pop("spine3", None)
    return out


def _neck_and_head(tree: _Tree, chain: list[int], tiny: float) -> dict[str, int]:
    """Neck and head along the chain from the chest to the top of the head: the neck is its first joint with a
    real bone; the head is the first joint after it where the chain branches (eyes, jaw) or else its last joint,
    taken at the start of a zero-length run (Reallusion's FacialBone sits on its Head). A chain with the neck as
    its only joint leaves the head to `_derive_missing` (or to its End Site here)."""
    joints = [k for k in chain if k < tree.njoints]
    real = [k for k in joints if tree.bone[k] > tiny]
    if not real:
        return {}
    top = {"neck": real[0]}
    after = joints[joints.index(real[0]) + 1:]
    head = next((k for k in after if len(tree.children[k]) >= 2), after[-1] if after else None)
    while head is not None and tree.bone[head] <= tiny and tree.parents[head] in after:
        head = tree.parents[head]
    if head is not None:
        top["head"] = head
    elif chain and chain[-1] >= tree.njoints and tree.bone[chain[-1]] > tiny:
        top["head"] = chain[-1]
    return top


def _head_chain(tree: _Tree, chest: int, arm_tops: list[int]) -> dict[str, int]:
    """Neck and head on the longest chain above the chest that carries no arm (`_neck_and_head`)."""
    arms = {k for a in arm_tops for k in tree.ancestors(a)}
    starts = [c for c in tree.children[chest] if c < tree.njoints and c not in arms]
    leaves = [lf for c in starts for lf in tree.leaves() if tree.is_ancestor(c, lf)]
    if not leaves:
        return {}
    leg = max(tree.depth[k] for k in tree.leaves())
    return _neck_and_head(tree, tree.path(chest, max(leaves, key=lambda lf: tree.depth[lf])), _TINY * leg)


def _derive_missing(tree: _Tree, nodes: dict[str, int]) -> dict[str, tuple[int, str]]:
    """End Sites standing in for joints the skeleton lacks: {smpl: (end-site node, reason)}."""
    extra: dict[str, tuple[int, str]] = {}

    def end_below(k: int) -> int | None:
        ends = [c for c in tree.children[k] if c >= tree.njoints]
        return max(ends, key=lambda c: tree.bone[c]) if ends else None

    wants = [("head", "neck")] + [(f"{s}_{a}", f"{s}_{b}") for s in "lr"
                                  for a, b in (("foot", "ankle"), ("wrist", "elbow"), ("ankle", "knee"))]
    for smpl, parent in wants:
        if smpl in nodes or parent not in nodes:
            continue
        host = nodes[parent]
        if smpl == "head":  # deepest joint of the neck chain
            while len([c for c in tree.children[host] if c < tree.njoints]) == 1:
                host = [c for c in tree.children[host] if c < tree.njoints][0]
        e = end_below(host)
        if e is not None and tree.bone[e] > 0:
            extra[smpl] = (e, f"End Site of {tree.names[host]}")
    return extra


def _to_mapping(tree: _Tree, nodes: dict[str, int], extra: dict[str, tuple[int, str]]
                ) -> tuple[Bvh, dict[str, str], dict[str, str]]:
    bvh = tree.bvh
    mapping = {smpl: tree.names[k] for smpl, k in nodes.items() if k < tree.njoints}
    derived: dict[str, str] = {}
    promote = {smpl: k for smpl, k in nodes.items() if k >= tree.njoints}
    promote.update({smpl: e for smpl, (e, _) in extra.items()})
    # Promote in decreasing End Site index so earlier indices stay valid.
    for smpl, k in sorted(promote.items(), key=lambda kv: -kv[1]):
        name = f"{tree.names[tree.parents[k]]}_end_{smpl}"
        bvh = bvh.promote_end_site(k - tree.njoints, name)
        mapping[smpl] = name
        derived[smpl] = extra[smpl][1] if smpl in extra else f"End Site of {tree.names[tree.parents[k]]}"
    return bvh, mapping, derived


def _check(mapping: dict[str, str]) -> None:
    need = [j for j in REQUIRED if j != "head" and j not in mapping]
    if need:
        raise ValueError(f"mapping lacks {need}")
    if len(set(mapping.values())) != len(mapping):
        raise ValueError("a source joint is mapped twice")


def auto_mapping(bvh: Bvh) -> AutoMapping:
    """The mapping for any humanoid BVH: Bandai's preset, else name rules, else topology (module doc).

    ValueError with the reasons when the skeleton cannot be mapped."""
    bandai = resolve_preset(BANDAI, bvh.names)
    if all(j in bandai for j in REQUIRED):
        return AutoMapping("bandai", "preset", bandai, bvh)
    if bvh.num_frames == 0:
        raise ValueError(f"{bvh.path}: no frames")
    tree = _Tree(bvh)
    family = detect_family(bvh.names)
    reasons = []
    for method in ("names", "topology"):
        try:
            if method == "names":
                nodes = _trunk(tree, _map_limbs_by_names(tree), None)
            else:
                nodes = _trunk(tree, *_map_by_topology(tree))
            extra = _derive_missing(tree, nodes)
            out_bvh, mapping, derived = _to_mapping(tree, nodes, extra)
            _check(mapping)
        except ValueError as exc:
            reasons.append(f"{method}: {exc}")
            continue
        return AutoMapping((family or "generic") if method == "names" else "topology", method, mapping, out_bvh,
                           derived)
    raise ValueError(f"{bvh.path}: cannot map this skeleton to SMPL ({'; '.join(reasons)}); "
                     f"joints are {bvh.names}")
