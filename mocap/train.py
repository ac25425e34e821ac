"""Train the causal model (or the single-frame baseline) on synthetic views of real mocap.

    python -m mocap.train --config cpu [--data cache/bandai] [--out runs/cpu] [--kind causal|single-frame]
                          [--device auto|cpu|cuda|cuda:N] [--amp off|bf16|fp16]

The device is chosen once, up front (auto: CUDA when present): the model and optimizer live there and each
batch, generated on the CPU, is moved there. Resumable (re-run the same command: it continues from
OUT/last.safetensors), seeded (iteration i always sees the same batch), checkpoints as safetensors + JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .data import load_cache
from .data.augment import Augment
from .data.motion_bank import MotionBank, Timing
from .data.synth import SynthConfig, SyntheticGenerator
from .losses import LOSS_WEIGHTS, compute_losses, total_loss
from .metrics import pa_mpjpe
from .skeleton import NUM_JOINTS
from .model import CausalMocap, ModelConfig, save_checkpoint
from .model.checkpoint import load_checkpoint_meta, resolve_checkpoint

#: How training windows are played back: webcam frame rates, dropped frames, speed changes (issue: any fps).
TRAIN_TIMING = Timing(fps_choices=(24.0, 25.0, 30.0, 30.0, 30.0, 50.0, 60.0), drop_prob=(0.0, 0.15),
                      speed=(0.7, 1.5), warp=0.3)


#: Validation windows are the same whatever the training seed, so runs with different seeds compare.
VALIDATION_SEED = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    iters: int = 6000
    batch: int = 32
    window: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    val_every: int = 500
    save_every: int = 250
    threads: int = 1                # 1 intra-op thread: the ops are small, more threads mostly add sync cost
    minutes: float | None = None    # wall-time budget (the LR schedule anneals to whichever ends first)
    augment: bool = True            # widen the motion prior (mirror, recombine, perturb, procedural poses)
    timing: bool = True             # random fps / drops / speed warps (False: 30 fps, speed 0.8-1.25 as before)
    fps_choices: tuple[float, ...] = TRAIN_TIMING.fps_choices  # drawn uniformly per window: repeat a rate to weight it
    loss_weights: dict = dataclasses.field(default_factory=dict)  # overrides of losses.LOSS_WEIGHTS, by term name
    model: dict = dataclasses.field(default_factory=dict)


CONFIGS: dict[str, TrainConfig] = {
    # Fits the 2-core reference machine in under an hour.
    "cpu": TrainConfig(iters=12000, minutes=58.0),
    # Bigger network, longer windows, more iterations: for a GPU (device tool) run.
    "gpu": TrainConfig(iters=60000, batch=256, window=96, lr=5e-4, threads=8,
                       model={"encoder_hidden": 512, "decoder_hidden": 512, "traj_hidden": 256}),
    # Minutes-long smoke run (tests, quick experiments).
    "tiny": TrainConfig(iters=40, batch=4, window=16, val_every=20, save_every=20,
                        model={"encoder_hidden": 32, "decoder_hidden": 32, "traj_hidden": 16}),
}


#: Autocast dtypes for `--amp` (CUDA only; the losses stay in float32).
AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(ValueError):
    """A device or AMP request this machine cannot honour; the command line prints it as one sentence."""


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> the first CUDA device if there is one, else the CPU; 'cpu', 'cuda', 'cuda:N' as asked.

    Raises DeviceError (not a CUDA traceback halfway into training) when CUDA is asked for but absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N): {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(f"--device {name}: CUDA is not available (torch {torch.__version__}, {build})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise DeviceError(f"--device {name}: training runs on cpu or cuda only")
    return device


def _check_amp(amp: str, device: torch.device) -> None:
    if amp == "off":
        return
    if amp not in AMP_DTYPES:
        raise DeviceError(f"--amp {amp}: choose off, {', '.join(AMP_DTYPES)}")
    if device.type != "cuda":
        raise DeviceError(f"--amp {amp} needs a CUDA device (training on {device} runs in float32)")
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise DeviceError("--amp bf16: this GPU has no bfloat16 support; use --amp fp16")


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _lr_at(cfg: TrainConfig, it: int, time_progress: float = 0.0) -> float:
    """Warm-up then cosine decay over whichever runs out first: iterations or the wall-time budget."""
    warm = min(1.0, (it + 1) / 200)
    progress = min(max(it / cfg.iters, time_progress), 1.0)
    return cfg.lr * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def _save_optimizer(opt: torch.optim.Optimizer, path: Path, it: int) -> None:
    """Adam moments as flat safetensors (no pickle), plus the iteration number."""
    flat: dict[str, torch.Tensor] = {"iteration": torch.tensor([it])}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            t = torch.as_tensor(v).detach().cpu()  # moments live on the training device; files are device-free
            flat[f"{i}.{k}"] = t.clone().reshape(-1) if k == "step" else t.contiguous()
    save_file(flat, str(path))


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> int:
    flat = load_file(str(path))
    sd = opt.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in flat.items():
        if key == "iteration":
            continue
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v.reshape(()) if k == "step" else v
    sd["state"] = state
    opt.load_state_dict(sd)
    return int(flat["iteration"][0])


@torch.no_grad()
def validate(model: CausalMocap, gen: SyntheticGenerator, bank: MotionBank, seed: int, n: int = 32, window: int = 128) -> dict:
    """PA-MPJPE / MPJPE (mm) on a fixed set of validation windows, moving cameras (float32, on the model's device)."""
    model.eval()
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    motion = bank.sample(rng, n, window, speed=(1.0, 1.0))
    batch = gen(motion, rng, camera="moving")
    out, _ = model.forward_sequence(batch["x"].to(device), batch["omega"].to(device))
    pred = out["joints_cam_rel"].reshape(-1, NUM_JOINTS, 3).float().cpu().numpy()
    gt = batch["gt_joints_cam_rel"].reshape(-1, NUM_JOINTS, 3).numpy()
    model.train()
    return {
        "val_pa_mpjpe_mm": float(pa_mpjpe(pred, gt)),
        "val_mpjpe_mm": float(np.linalg.norm(pred - gt, axis=-1).mean() * 1000),
    }


def concat_caches(arrays: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Several dataset caches (each a dict of frame arrays + clip_start/clip_len) as one."""
    if len(arrays) == 1:
        return arrays[0]
    out: dict[str, np.ndarray] = {}
    offset = 0
    starts = []
    for a in arrays:
        starts.append(a["clip_start"].astype(np.int64) + offset)
        offset += len(a["trans"])
    out["clip_start"] = np.concatenate(starts)
    for key in ("pose_aa", "trans", "betas", "clip_len"):
        out[key] = np.concatenate([a[key] for a in arrays])
    return out


def warm_start(model: CausalMocap, checkpoint: str | Path) -> str:
    """Initialise from a trained checkpoint. Tensors whose input width grew (the frame-interval column) keep the
    old weights in the old columns and zeros in the new ones, so the warm model starts exactly where the old
    one was at 30 fps. Returns the source model id."""
    weights = resolve_checkpoint(checkpoint)
    old = load_file(str(weights))
    own = model.state_dict()
    for key, value in old.items():
        if key not in own:
            raise ValueError(f"warm start: {weights} has {key!r}, which this model does not")
        target = own[key]
        if target.shape == value.shape:
            own[key] = value
        elif target.dim() == 2 and target.shape[0] == value.shape[0] and target.shape[1] > value.shape[1]:
            grown = torch.zeros_like(target)
            grown[:, : value.shape[1]] = value
            own[key] = grown
        else:
            raise ValueError(f"warm start: {key} is {tuple(value.shape)} in {weights}, {tuple(target.shape)} here")
    model.load_state_dict(own)
    return str(load_checkpoint_meta(weights).get("model_id", weights.stem))


def train(cfg: TrainConfig, data: Path | list[Path], out_dir: Path, kind: str = "causal", minutes: float | None = None,
          init: str | None = None, device: str | torch.device = "cpu", amp: str = "off") -> Path:
    """Train to OUT_DIR/model.safetensors. `device` as in `resolve_device`; `amp` ('off', 'bf16', 'fp16', CUDA
    only) autocasts the network's forward pass, the losses are computed in float32 either way."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    _check_amp(amp, dev)
    torch.set_num_threads(cfg.threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = [data] if isinstance(data, Path) else list(data)
    train_bank = MotionBank(concat_caches([load_cache(d / "train.npz") for d in folders]))
    val_bank = MotionBank(load_cache(folders[0] / "val.npz"))
    model_cfg = ModelConfig.from_dict({**cfg.model, "kind": kind})
    torch.manual_seed(cfg.seed)
    model = CausalMocap(model_cfg)
    init_id = warm_start(model, init) if init else None
    model.to(dev)  # before the optimizer is built, so its moments are created on the device too
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = SyntheticGenerator(SynthConfig(augment=Augment() if cfg.augment else None))
    val_gen = SyntheticGenerator(SynthConfig())
    timing = dataclasses.replace(TRAIN_TIMING, fps_choices=tuple(cfg.fps_choices)) if cfg.timing else None
    weights = {**LOSS_WEIGHTS, **cfg.loss_weights}
    last, last_opt = out_dir / "last.safetensors", out_dir / "last.optim.safetensors"
    start = 0
    if last.is_file() and last_opt.is_file():
        model.load_state_dict(load_file(str(last)))
        start = _load_optimizer(opt, last_opt)
        print(f"resumed from {last} at iteration {start}")
    (out_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
    meta = {"model_id": f"livemocap-{kind}-{out_dir.name}", "train_config": dataclasses.asdict(cfg),
            "data": [str(d) for d in folders], "train_frames": train_bank.frames, "val_frames": val_bank.frames,
            "init": init_id, "device": str(dev), "amp": amp}
    autocast = (lambda: torch.autocast("cuda", dtype=AMP_DTYPES[amp])) if amp != "off" else nullcontext
    # fp16 gradients underflow without loss scaling; bf16 and float32 need none (the scaler is then a no-op).
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")

    t_start = time.monotonic()
    budget = minutes * 60 if minutes else None
    deadline = t_start + budget if budget else None
    log = open(out_dir / "log.jsonl", "a")
    model.train()
    bar = tqdm(range(start, cfg.iters), initial=start, total=cfg.iters, desc=f"train {kind}", dynamic_ncols=True)
    it = start
    skipped = 0
    for it in bar:
        rng = np.random.default_rng([cfg.seed, it])
        batch = _to_device(gen(train_bank.sample(rng, cfg.batch, cfg.window, timing=timing), rng), dev)
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, it, (time.monotonic() - t_start) / budget if budget else 0.0)
        with autocast():
            out, _ = model.forward_sequence(batch["x"], batch["omega"])
        if amp != "off":
            out = {k: v.float() for k, v in out.items()}
        terms = compute_losses(out, batch)
        loss = total_loss(terms, weights)
        opt.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            skipped += 1  # never let one degenerate batch poison the weights
            bar.write(f"iteration {it}: non-finite loss, batch skipped ({skipped} so far)")
            continue
        scaler.scale(loss).backward()
        scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(grad_norm):
            skipped += 1
            bar.write(f"iteration {it}: non-finite gradient, update skipped ({skipped} so far)")
            scaler.update()  # fp16: lowers the loss scale after the overflow
            continue
        scaler.step(opt)
        scaler.update()
        if it % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", j3d=f"{terms['joints3d'].item():.4f}")
        record = {"it": it, "loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
        if (it + 1) % cfg.val_every == 0 or it + 1 == cfg.iters:
            record.update(validate(model, val_gen, val_bank, VALIDATION_SEED))
            bar.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
        log.write(json.dumps(record) + "\n")
        if (it + 1) % cfg.save_every == 0:
            save_checkpoint(model, last, {**meta, "iteration": it + 1})
            _save_optimizer(opt, last_opt, it + 1)
            log.flush()
        if deadline and time.monotonic() > deadline:
            bar.write(f"time budget of {minutes} min reached at iteration {it + 1}")
            break
    save_checkpoint(model, last, {**meta, "iteration": it + 1})
    _save_optimizer(opt, last_opt, it + 1)
    final = save_checkpoint(model, out_dir / "model.safetensors", {**meta, "iteration": it + 1})
    log.close()
    return final


def parse_loss_weights(items: list[str]) -> dict[str, float]:
    """['smooth=12', ...] -> {'smooth': 12.0}; an unknown term or a negative / non-numeric weight raises ValueError."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in LOSS_WEIGHTS:
            raise ValueError(f"{item!r}: expected TERM=W with TERM one of {', '.join(LOSS_WEIGHTS)}")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not weight >= 0:
            raise ValueError(f"{item!r}: the weight must be a number >= 0")
        out[name] = weight
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m mocap.train", description=__doc__.split("\n")[0])
    p.add_argument("--config", choices=sorted(CONFIGS), default="cpu")
    p.add_argument("--data", type=Path, nargs="+", default=[Path("cache/bandai")],
                   help="folders with train.npz (all are trained on) / val.npz (the first one's validates)")
    p.add_argument("--init", default=None, help="warm-start from this checkpoint ('default' = the shipped model)")
    p.add_argument("--lr", type=float, default=None, help="override the config's peak learning rate")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--kind", choices=["causal", "single-frame"], default="causal")
    p.add_argument("--iters", type=int, default=None, help="override the config's iteration count")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-time budget: the LR schedule anneals to it and training stops (and saves) there")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    p.add_argument("--amp", choices=["off", *AMP_DTYPES], default="off",
                   help="mixed-precision forward pass on CUDA (bf16 needs Ampere or newer); losses stay float32")
    p.add_argument("--seed", type=int, default=None,
                   help="batch seed (iteration i of seed s always sees the same batch): a new one for a continuation run")
    p.add_argument("--fps-choices", default=None,
                   help="comma-separated frame rates drawn per training window, e.g. 24,25,30,50,60,60")
    p.add_argument("--loss-weight", action="append", default=[], metavar="TERM=W",
                   help=f"override one loss weight (repeatable), e.g. smooth=12; terms: {', '.join(LOSS_WEIGHTS)}")
    args = p.parse_args(argv)
    try:  # once, up front: a bad request is one sentence and exit code 2, before any data is loaded
        device = resolve_device(args.device)
        _check_amp(args.amp, device)
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    cfg = CONFIGS[args.config]
    if args.iters:
        cfg = dataclasses.replace(cfg, iters=args.iters)
    if args.threads:
        cfg = dataclasses.replace(cfg, threads=args.threads)
    if args.lr:
        cfg = dataclasses.replace(cfg, lr=args.lr)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    if args.fps_choices:
        try:
            fps_choices = tuple(float(f) for f in args.fps_choices.split(","))
        except ValueError:
            fps_choices = ()
        if not fps_choices or min(fps_choices) <= 0:
            print(f"error: --fps-choices {args.fps_choices!r}: give positive frame rates, e.g. 24,30,60", file=sys.stderr)
            sys.exit(2)
        cfg = dataclasses.replace(cfg, fps_choices=fps_choices)
    if args.loss_weight:
        try:
            cfg = dataclasses.replace(cfg, loss_weights={**cfg.loss_weights, **parse_loss_weights(args.loss_weight)})
        except ValueError as exc:
            print(f"error: --loss-weight: {exc}", file=sys.stderr)
            sys.exit(2)
    out = args.out or Path("runs") / f"{args.config}-{args.kind}"
    print(f"training on {device}" + (f" with {args.amp} autocast" if args.amp != "off" else ""), file=sys.stderr)
    path = train(cfg, args.data, out, args.kind, args.minutes if args.minutes is not None else cfg.minutes, args.init,
                 device=device, amp=args.amp)
    print(json.dumps({"checkpoint": str(path)}))


if __name__ == "__main__":
    main()
