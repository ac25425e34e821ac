"""Average the weights of fine-tunes that share one starting point: `python -m mocap.soup A B ... --out C`.

Why: two warm starts from the same model with different loss weights and seeds land in one basin, and their
uniform average (a "model soup", Wortsman et al. 2022) keeps most of what each gained at no cost at run time:
the shipped v6 is the soup of a run that fitted the 2D better and one that jittered less (MODEL_CARD.md).
Only models with the same architecture and the same starting checkpoint are averaged; anything else is refused,
since weights of unrelated runs do not average into a working model.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from .model.checkpoint import CheckpointError, load_checkpoint_meta, load_model, resolve_checkpoint, save_checkpoint


def soup(paths: list[Path], out: Path, model_id: str | None = None) -> Path:
    """The uniform weight average of ``paths`` (>= 2 checkpoints) written to ``out`` (.safetensors + .json)."""
    if len(paths) < 2:
        raise ValueError(f"a soup needs at least 2 checkpoints, got {len(paths)}")
    metas = [load_checkpoint_meta(p) for p in paths]
    configs = {json.dumps(m.get("config"), sort_keys=True) for m in metas}
    if len(configs) != 1:
        raise CheckpointError("the checkpoints have different model configs: their weights cannot be averaged")
    inits = {m.get("init") for m in metas}
    if len(inits) != 1 or None in inits:
        raise CheckpointError(f"the checkpoints do not share one starting checkpoint (init: {sorted(map(str, inits))})")
    models = [load_model(p) for p in paths]
    base = models[0]
    states = [m.state_dict() for m in models]
    averaged = {k: (torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v)
                for k, v in states[0].items()}
    base.load_state_dict(averaged)
    extra = {k: v for k, v in metas[0].items() if k not in ("config", "model_id", "iteration", "train_config")}
    extra.update({"model_id": model_id or out.stem,
                  "soup_of": [{"checkpoint": str(resolve_checkpoint(p)), "model_id": m.get("model_id"),
                               "iteration": m.get("iteration"), "train_config": m.get("train_config")}
                              for p, m in zip(paths, metas)]})
    return save_checkpoint(base, out, extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mocap.soup", description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", type=Path, nargs="+", help=".safetensors files (JSON beside each) or run folders")
    p.add_argument("--out", type=Path, required=True, help="the averaged checkpoint's .safetensors path")
    p.add_argument("--model-id", default=None, help="the soup's model id (default: the --out file's stem)")
    args = p.parse_args(argv)
    try:
        path = soup(args.checkpoints, args.out, args.model_id)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"checkpoint": str(path), "averaged": len(args.checkpoints)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
