"""The live command: camera (or video, images, URL, synthetic demo) in, SMPL pose stream out over ZeroMQ.

    python run_live.py [--source auto|0|VIDEO|FOLDER|URL|synthetic] [--publish tcp://127.0.0.1:5556] ...
    python -m stream ...            (the same command, from an installed package)

With no webcam, ``--source auto`` (the default) runs the synthetic walking person through the real model path,
so the command always shows something real. Bad arguments end with one ``error:`` line and exit status 2; the
end of a run prints what was done (frames, drops, fps, per-stage p50/p99 ms, engine), as JSON with --json-stats.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from stream.detector.base import Detector

log = logging.getLogger("livemocap")

ENGINES = ("auto", "onnxruntime", "torch", "tensorrt", "triton")
CAMERA_MOTIONS = ("static", "visual", "gyro")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"
WEBCAM_PROBE_S = 2.0


class UsageError(Exception):
    """A bad argument or a missing input file: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports an error as a single line (no usage dump) with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(prog: str = "run_live.py") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="auto",
                   help="auto (webcam 0 if it delivers a frame within 2 s, else synthetic) | webcam index | video "
                        "file | image folder | URL (rtsp://, http://) | synthetic (default: auto)")
    p.add_argument("--engine", default="auto", choices=ENGINES,
                   help="inference backend (default: auto); triton: the step runs on a Triton server (--triton-url), "
                        "the tracks' state stays here")
    p.add_argument("--triton-url", default=None, metavar="URL",
                   help="with --engine triton: http://HOST:8000 or grpc://HOST:8001 (python -m serve, or production "
                        "Triton with a repository from python -m export triton; docs/scaling.md)")
    p.add_argument("--checkpoint", default="default",
                   help="model: 'default' (shipped), a .safetensors checkpoint, a run folder, .onnx or .engine")
    p.add_argument("--publish", default=DEFAULT_PUBLISH, metavar="ADDR",
                   help=f"ZeroMQ PUB endpoint to bind (default: {DEFAULT_PUBLISH})")
    p.add_argument("--proxy", default=None, metavar="ADDR",
                   help="publish by connecting to a stream.proxy's camera side (tcp://HOST:5555) instead of binding "
                        "--publish; use with --camera-id")
    p.add_argument("--proxy-key", default=None, metavar="KEYFILE",
                   help="with --proxy: the proxy's CURVE public key (it runs with --curve-secret)")
    p.add_argument("--camera-id", default=None, metavar="ID",
                   help="publish on pose/<ID>/<track> instead of pose/<track> (many cameras behind one proxy)")
    p.add_argument("--curve-secret", default=None, metavar="KEYFILE",
                   help="encrypt the stream with CURVE using this server .key_secret file (python -m stream.keys "
                        "new server); subscribers then need server.key. Required to bind beyond loopback")
    p.add_argument("--curve-allow", default=None, metavar="CLIENTS",
                   help="with --curve-secret: accept only these client public keys (a folder of .key files, or a "
                        "file listing one key or .key path per line)")
    p.add_argument("--insecure-public", action="store_true",
                   help="bind beyond loopback WITHOUT encryption or authentication (anyone on the network can read "
                        "the pose stream); prints a warning")
    p.add_argument("--wait-subscribers", type=float, default=0.0, metavar="SECONDS",
                   help="before the first frame, wait up to SECONDS for a subscriber to connect (ZeroMQ drops "
                        "what is published before a subscriber joins)")
    p.add_argument("--camera-motion", choices=CAMERA_MOTIONS, default=None,
                   help="camera rotation source: static (tripod, default), visual (optical flow), gyro (--gyro)")
    p.add_argument("--gyro", default=None, metavar="ADDR|CSV",
                   help="gyro samples: tcp://HOST:PORT (ZeroMQ), udp://HOST:PORT, or a CSV file t,wx,wy,wz "
                        "(t = seconds of video time, 0 at the first frame; rad/s in the camera frame)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames read")
    p.add_argument("--lost-reset-frames", type=int, default=15, metavar="N",
                   help="frames without the person before the model memory restarts (default: 15)")
    p.add_argument("--preview", action="store_true", help="show an OpenCV window with the skeleton overlay")
    p.add_argument("--record", default=None, metavar="FILE",
                   help="also write every published message to FILE (JSON Lines; read with python -m stream.recorder); "
                        "written as FILE.partial and renamed when the run ends")
    p.add_argument("--overwrite", action="store_true", help="let --record replace an existing FILE")
    p.add_argument("--vmc", default=None, metavar="HOST:PORT",
                   help="also drive an avatar: send VMC protocol (OSC/UDP) to a receiver such as VSeeFace, EVMC4U "
                        "or VMC4B, usually 127.0.0.1:39539 (see docs/avatars.md)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=True,
                      help="video files, folders and synthetic: play at their fps, skipping frames when behind "
                           "(default)")
    pace.add_argument("--fast", dest="realtime", action="store_false",
                      help="video files, folders and synthetic: every frame, as fast as possible")
    p.add_argument("--max-people", type=int, default=4, metavar="N",
                   help="follow up to N people at once (the wheel's BlazePose networks on LiteRT, one batched model "
                        "step per frame, everyone in one world frame); 1 = the single-person MediaPipe path "
                        "(default: 4)")
    p.add_argument("--pipelined", action=argparse.BooleanOptionalAction, default=False,
                   help="multi-person path: capture, detection and model+publish in their own threads, newest frame "
                        "wins (default: off; on a busy 2-core machine the stages compete for the same cores and it "
                        "measured slower, see BENCHMARKS.md)")
    p.add_argument("--json-stats", action="store_true", help="print the end-of-run summary as JSON on stdout")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                   help="fit each step's body to the frame's 2D keypoints (3 Levenberg-Marquardt steps, ~1 ms p50 "
                        "per person-frame on a quiet 2-core CPU; timed as the 'refine' stage): reprojection error "
                        "3.1 -> 2.2 %% and 3.1 -> 2.1 %% on the shared videos (default: on, see BENCHMARKS.md)")
    p.add_argument("--smooth", action=argparse.BooleanOptionalAction, default=True,
                   help="One-Euro smoothing of each person's published pose, cutoffs in hertz (opening with speed; "
                        "~0.2 ms per person-frame): less jitter for slightly more lag (default: on; figures in "
                        "BENCHMARKS.md, 'Output smoothing')")
    p.add_argument("--smooth-min-cutoff", type=float, default=None, metavar="HZ",
                   help="the smoothing's cutoff at rest: lower is smoother and lags slow motion more (default: 4)")
    p.add_argument("--adapt", action="store_true",
                   help="adapt the model to this camera and person in the background (self-supervised, gated, "
                        "rolled back on regression; needs torch); weights persist per --adapt-profile")
    p.add_argument("--adapt-profile", default="default", metavar="NAME",
                   help="profile the adapted weights are loaded from and saved to (default: default)")
    p.add_argument("--adapt-dir", default=None, metavar="DIR",
                   help="where profiles live (default: ~/.cache/livemocap/profiles)")
    p.add_argument("--adapt-worker", choices=("thread", "process"), default="process",
                   help="run adaptation cycles in a low-priority thread or a niced child process (default: process)")
    p.add_argument("--adapt-interval", type=float, default=3.0, metavar="SECONDS",
                   help="pause between adaptation cycles (default: 3)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    return p


# ---------------------------------------------------------------------------------------------------- sources
def _is_url(spec: str) -> bool:
    return "://" in spec


def probe_webcam(index: int = 0, timeout: float = WEBCAM_PROBE_S) -> Any | None:
    """An open OpenCVSource on webcam ``index`` if it delivers a frame within ``timeout`` s, else None."""
    import cv2

    from stream.sources import OpenCVSource

    previous = cv2.getLogLevel()
    cv2.setLogLevel(0)  # silent: "can't open camera by index" is the expected answer on most servers
    try:
        src = OpenCVSource(index, retry_delay=0.5, max_retry_delay=1.0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if src.read(timeout=0.1) is not None:
                return src
        src.close()
        return None
    except Exception as exc:  # a broken camera driver is "no webcam", not a crash
        log.debug("webcam probe failed: %s", exc)
        return None
    finally:
        cv2.setLogLevel(previous)


def open_source(spec: str, realtime: bool) -> tuple[Any, str, str]:
    """(source, kind, clock) for a --source value; kind is webcam|url|video|folder|synthetic."""
    from stream.sources import ImageFolderSource, OpenCVSource, SyntheticSource

    spec = spec.strip()
    if spec == "auto":
        src = probe_webcam(0)
        if src is not None:
            log.info("source auto: webcam 0 delivers frames")
            return src, "webcam", "capture"
        log.warning("source auto: no webcam delivered a frame within %.0f s; using the synthetic source", WEBCAM_PROBE_S)
        return SyntheticSource(realtime=realtime), "synthetic", "media"
    if spec.lower() == "synthetic":
        return SyntheticSource(realtime=realtime), "synthetic", "media"
    if spec.isdigit():
        return OpenCVSource(int(spec)), "webcam", "capture"
    if _is_url(spec):
        return OpenCVSource(spec), "url", "capture"
    path = Path(spec).expanduser()
    try:
        if path.is_dir():
            return ImageFolderSource(path, realtime=realtime), "folder", "media"
        if path.is_file():
            return OpenCVSource(path, realtime=realtime), "video", "media"
    except (OSError, ValueError) as exc:  # an empty folder, a file OpenCV cannot decode
        raise UsageError(f"--source: {exc}") from None
    raise UsageError(f"--source {spec!r}: neither a file nor a folder")


def check_source_spec(spec: str) -> None:
    """Fail fast (before any model loads) on a --source that names a missing file or folder."""
    spec = spec.strip()
    if spec in ("auto",) or spec.lower() == "synthetic" or spec.isdigit() or _is_url(spec):
        return
    if not Path(spec).expanduser().exists():
        raise UsageError(f"--source {spec!r}: no such file or folder (expected auto, synthetic, a webcam index, "
                         "a video file, an image folder or a URL)")


def camera_motion_spec(kind: str | None, gyro: str | None) -> str:
    """--camera-motion / --gyro -> a `make_camera_motion` spec string; UsageError for inconsistent flags."""
    if gyro is None:
        if kind == "gyro":
            raise UsageError("--camera-motion gyro needs --gyro ADDR|CSV (tcp://HOST:PORT, udp://HOST:PORT or a CSV)")
        return kind or "static"
    if kind not in (None, "gyro"):
        raise UsageError(f"--gyro is only used with --camera-motion gyro, not {kind}")
    if gyro.startswith(("tcp://", "ipc://", "inproc://")):
        port = gyro.rpartition(":")[2]
        if gyro.startswith("tcp://") and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise UsageError(f"--gyro {gyro!r}: expected tcp://HOST:PORT with a port 1..65535")
        return f"gyro:zmq:{gyro}"
    if gyro.startswith("udp://"):
        host, _, port = gyro[len("udp://"):].rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UsageError(f"--gyro {gyro!r}: expected udp://HOST:PORT with a port 1..65535")
        return f"gyro:udp:{host}:{port}"
    if _is_url(gyro):
        raise UsageError(f"--gyro {gyro!r}: unsupported scheme (use tcp://, ipc://, udp:// or a CSV file)")
    if not Path(gyro).expanduser().is_file():
        raise UsageError(f"--gyro {gyro!r}: gyro CSV not found")
    return f"gyro:csv:{Path(gyro).expanduser()}"


# ---------------------------------------------------------------------------------------------------- summary
def _fmt_ms(d: dict[str, Any]) -> str:
    return "n/a" if d.get("p50") is None else f"{d['p50']:.1f}/{d['p99']:.1f}"


def _gyro_lines(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return []
    cov = "n/a" if report["coverage_pct"] is None else f"{report['coverage_pct']:.1f} %"
    return [f"gyro:      {report['source']}: coverage {cov} of {report['frames']} frame intervals, "
            f"{report['samples']} samples ({report['rejected']} rejected, {report['bad_packets']} bad packets)"
            ] + [f"gyro:      assumed: {a}" for a in report["assumed"]]


def _record_text(stats: dict[str, Any]) -> str:
    if not stats.get("record"):
        return ""
    if stats.get("record_errors"):
        return (f"; RECORDING FAILED: {stats['record_errors']} write error(s) ({stats.get('record_error')}), "
                f"{stats.get('recorded', 0)} message(s) kept in {stats.get('recorded_to') or 'nothing'}")
    return f", recorded {stats.get('recorded', 0)} message(s) to {stats.get('recorded_to') or 'nothing'}"


def publish_security(args: argparse.Namespace) -> dict[str, Any]:
    """Publisher keyword arguments for --curve-secret / --curve-allow, after the exposure rule: binding beyond
    loopback needs CURVE or an explicit --insecure-public (then a warning). UsageError for bad keys/addresses."""
    from stream.keys import KeyFileError, load_allowed, load_secret
    from stream.publisher import check_bind_address, is_loopback

    try:
        check_bind_address(args.publish)
    except ValueError as exc:
        raise UsageError(f"--publish {exc}") from None
    if args.curve_allow and not args.curve_secret:
        raise UsageError("--curve-allow needs --curve-secret (the allow-list is checked during the CURVE handshake)")
    kwargs: dict[str, Any] = {}
    try:
        if args.curve_secret:
            kwargs["curve_secret_key"] = load_secret(args.curve_secret)[1]
        if args.curve_allow:
            kwargs["curve_allowed_clients"] = load_allowed(args.curve_allow)
    except KeyFileError as exc:
        raise UsageError(f"--curve-secret/--curve-allow: {exc}") from None
    if not is_loopback(args.publish):
        if not kwargs and not args.insecure_public:
            raise UsageError(f"--publish {args.publish}: binding beyond loopback would stream the tracked person's "
                             "pose unencrypted to the network; pass --curve-secret KEYFILE (make one with `python -m "
                             "stream.keys new server`) or, knowingly, --insecure-public")
        if not kwargs:
            log.warning("--insecure-public: %s is reachable from other hosts WITHOUT encryption or authentication; "
                        "anyone who can connect can read the pose stream", args.publish)
    return kwargs


def _proxy_security(args: argparse.Namespace) -> dict[str, Any]:
    """Publisher keyword arguments for --proxy (connect, the proxy's key); UsageError for a bad address/key."""
    from stream.keys import KeyFileError
    from stream.proxy import connect_security

    if args.curve_secret or args.curve_allow:
        raise UsageError("--curve-secret/--curve-allow are for a bound --publish; with --proxy the proxy "
                         "encrypts (pass its public key with --proxy-key)")
    try:
        return connect_security(args.proxy, args.proxy_key, args.insecure_public)
    except (ValueError, KeyFileError) as exc:
        raise UsageError(f"--proxy: {exc}") from None


def human_summary(stats: dict[str, Any]) -> str:
    fps = f"{stats['fps']:.1f} fps" if stats.get("fps") else "n/a fps"
    stages = "  ".join(f"{k} {_fmt_ms(v)}" for k, v in stats["stages_ms"].items())
    errors = ", ".join(f"{k} {v}" for k, v in stats["errors"].items()) or "none"
    reproj = stats["reproj_err_rel"]
    reproj_text = "n/a" if reproj["p50"] is None else f"p50 {100 * reproj['p50']:.1f} %, p99 {100 * reproj['p99']:.1f} %"
    s = stats["statuses"]
    return "\n".join([
        f"source:    {stats['source']}",
        f"engine:    {stats['engine']} on {stats.get('device', '?')}, model {stats['model']}",
        f"publish:   {stats.get('publish_addr', '?')}" + _record_text(stats),
        f"frames:    {stats['frames']} processed, {stats['published']} published "
        f"(init {s['init']}, tracking {s['tracking']}, lost {s['lost']}), {stats['dropped']} dropped "
        f"({stats['skipped_late']} skipped late), {stats['tracks']} track(s), {stats['model_inits']} model start(s)",
        f"speed:     {fps} over {stats['elapsed_s']:.1f} s; stop: {stats['stop_reason']}",
        f"stages ms (p50/p99): {stages}",
        f"reprojection error / keypoint box height: {reproj_text}",
        f"errors:    {errors}",
    ] + _gyro_lines(stats.get("camera_motion_report")) + [f"warning:   {w}" for w in stats.get("warnings", [])] + ([_adapt_line(stats["adaptation"])] if stats.get("adaptation") else []))


def _adapt_line(a: dict[str, Any]) -> str:
    why = (f" (no cycle yet: one needs {a['frames_per_cycle']} frames of one person followed without a break)"
           if not a["cycles"] and a.get("skipped") and a.get("frames_per_cycle") else "")
    return (f"adaptation: {a['mode']}, generation g{a['generation']}: {a['cycles']} cycle(s){why}, {a['accepted']} "
            f"accepted, {a['rejected']} rejected, {a['rollbacks']} rollback(s), {a['errors']} error(s); "
            f"cycle {a['cycle_s_median']} s; profile {a['profile']}")


# ---------------------------------------------------------------------------------------------------- main
def _smoothing(args: argparse.Namespace) -> Any:
    """The output smoothing the flags ask for (None: off)."""
    from mocap.smoothing import SmoothingConfig

    if not args.smooth:
        return None
    if args.smooth_min_cutoff is None:
        return SmoothingConfig()
    return SmoothingConfig(min_cutoff_hz=args.smooth_min_cutoff)


def _single_thread_torch(engine: Any) -> None:
    """Batch-1 steps are hundreds of tiny ops: torch's intra-op threads only contend (measured 3.6 ms with one
    thread vs 86 ms with two on a busy 2-core machine), so the torch backend runs single-threaded here."""
    if getattr(engine, "name", "") == "torch" and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build everything from parsed arguments, run the loop, close everything; returns the stats."""
    import zmq

    import engines
    from stream.camera_motion import make_camera_motion
    from stream.loop import LiveLoop
    from stream.publisher import Publisher
    from stream.tracker import Tracker

    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.lost_reset_frames < 1:
        raise UsageError(f"--lost-reset-frames must be >= 1, got {args.lost_reset_frames}")
    if args.max_people < 1:
        raise UsageError(f"--max-people must be >= 1, got {args.max_people}")
    if args.smooth_min_cutoff is not None and not args.smooth_min_cutoff > 0:
        raise UsageError(f"--smooth-min-cutoff must be > 0 Hz, got {args.smooth_min_cutoff}")
    if args.wait_subscribers < 0:
        raise UsageError(f"--wait-subscribers must be >= 0, got {args.wait_subscribers}")
    check_source_spec(args.source)
    motion_spec = camera_motion_spec(args.camera_motion, args.gyro)
    checkpoint = args.checkpoint
    if checkpoint != "default" and not Path(checkpoint).expanduser().exists():
        raise UsageError(f"--checkpoint {checkpoint!r}: no such file or folder")
    security = _proxy_security(args) if args.proxy else publish_security(args)
    if args.camera_id is not None:
        from stream.publisher import check_camera_id

        try:
            check_camera_id(args.camera_id)
        except ValueError as exc:
            raise UsageError(f"--camera-id: {exc}") from None
    if (args.engine == "triton") != (args.triton_url is not None):
        raise UsageError("--engine triton and --triton-url go together (the URL of the Triton server)")
    if args.engine == "triton" and args.adapt:
        raise UsageError("--adapt cannot run with --engine triton: the weights live on the server")
    if args.triton_url is not None:
        from engines.triton_engine import parse_url

        try:
            args.triton_url = "{}://{}".format(*parse_url(args.triton_url))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    recorder = None
    if args.record:
        from stream.recorder import Recorder

        try:
            recorder = Recorder(args.record, overwrite=args.overwrite)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--record: {exc}") from None

    closers: list[Any] = [recorder] if recorder else []
    try:
        source, kind, clock = open_source(args.source, args.realtime)
        closers.append(source)
        if recorder is not None:
            recorder.set_fps(source.fps)  # BVH / NPZ frame timing
        vmc = None
        if args.vmc:
            from stream.recording import FanOut
            from stream.vmc import VmcSender

            try:
                vmc = VmcSender(args.vmc)
            except ValueError as exc:
                raise UsageError(f"--vmc: {exc}") from None
            closers.append(vmc)
        try:
            publisher = Publisher(args.publish, watch_subscribers=args.wait_subscribers > 0,
                                  camera_id=args.camera_id, **security)
        except (zmq.ZMQError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--publish {args.publish!r}: cannot bind: {exc}") from None
        closers.append(publisher)
        try:
            if args.engine == "triton":  # the server's model (--checkpoint names nothing here)
                engine = engines.load(args.triton_url, prefer=["triton"])
            else:
                engine = engines.load(str(Path(checkpoint).expanduser()) if checkpoint != "default" else "default",
                                      prefer=None if args.engine == "auto" else [args.engine])
        except Exception as exc:  # EngineLoadError, or a corrupt checkpoint: one line, no traceback
            raise UsageError(f"cannot load the model (--engine {args.engine}): {exc}") from None
        _single_thread_torch(engine)
        adaptation = None
        if args.adapt:
            from stream.adaptation.setup import AdaptSetupError, build_worker

            if args.adapt_interval <= 0:
                raise UsageError(f"--adapt-interval must be > 0, got {args.adapt_interval}")
            try:
                adaptation = build_worker(engine, checkpoint, profile=args.adapt_profile, profile_dir=args.adapt_dir,
                                          mode=args.adapt_worker, interval_s=args.adapt_interval)
            except AdaptSetupError as exc:
                raise UsageError(str(exc)) from None
            closers.append(adaptation)
        detector: Detector | None = None
        multi = False
        if kind != "synthetic":
            os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ start-up chatter
            from stream.detector import MediaPipePoseDetector

            if args.max_people > 1:
                try:
                    from stream.detector.blazepose_multi import BlazePoseMultiDetector, loop_threads

                    detector = BlazePoseMultiDetector(args.max_people, input_width=640, fps=source.fps,
                                                      num_threads=loop_threads(bool(args.pipelined)))
                    multi = True
                except ImportError as exc:  # LiteRT missing: the single-person path still works
                    log.warning("multi-person detector unavailable (%s); following one person", exc)
            if detector is None:
                try:
                    detector = MediaPipePoseDetector(input_width=640)
                except ImportError as exc:
                    raise UsageError(str(exc)) from None
            closers.append(detector)
        try:
            camera_motion = make_camera_motion(motion_spec)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--camera-motion: {exc}") from None
        closers.append(camera_motion)
        preview = None
        if args.preview:
            from stream.preview import Preview

            preview = Preview()
            closers.append(preview)
        if args.wait_subscribers > 0:
            joined = publisher.wait_for_subscriber(args.wait_subscribers)
            log.info("subscriber %s", "connected" if joined else f"not seen within {args.wait_subscribers:g} s")

        if motion_spec.startswith("gyro:csv:"):
            clock = "media"  # a recorded log is timed from the start of the video, not by this host's clock
        # The tracker gives up the id on the same frame the loop drops the model memory.
        from mocap.fitting import RefineConfig

        pipelined = bool(multi and args.pipelined)
        common = dict(lost_reset_frames=args.lost_reset_frames, preview=preview, clock=clock,
                      recorder=FanOut(recorder, vmc) if vmc is not None else recorder,
                      skip_late=args.realtime and kind in ("video", "folder", "synthetic") and not pipelined,
                      refine=RefineConfig() if args.refine else None,
                      smoothing=_smoothing(args))
        if multi:
            from stream.multi_tracker import MultiTracker
            from stream.pipeline_loop import MultiPersonLoop

            tracker: Any = MultiTracker(max_people=args.max_people, max_lost=args.lost_reset_frames - 1,
                                        fps=source.fps)
            loop: Any = MultiPersonLoop(source, detector, tracker, camera_motion, engine, publisher,
                                        pipelined=pipelined, lossless=not args.realtime, **common)
        else:
            tracker = Tracker(max_lost=args.lost_reset_frames - 1, fps=source.fps)
            loop = LiveLoop(source, detector, tracker, camera_motion, engine, publisher, **common)
        if adaptation is not None:
            loop.on_model_step = adaptation.on_step
            adaptation.start()
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        signals = [0]

        def on_signal(signum: int, frame: object) -> None:
            # The loop stops within one frame: a second signal must not cut the summary or the recording short,
            # so only a third one forces (KeyboardInterrupt, still closing everything on the way out).
            signals[0] += 1
            _SIGNALS_SEEN[0] += 1
            if signals[0] >= 3:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
                raise KeyboardInterrupt
            log.info("signal %d: stopping after the current frame (%s)", signum,
                     "a third signal forces" if signals[0] == 2 else "twice more to force")
            loop.stop()

        for sig in previous:
            signal.signal(sig, on_signal)
        log.info("running: %s -> %s (camera motion %s, engine %s on %s)", kind, publisher.endpoint, motion_spec,
                 engine.name, engine.device)
        try:
            stats = loop.run(args.max_frames)
        finally:
            if not signals[0]:  # after a signal, on_signal stays until main() has printed the summary
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if adaptation is not None:
            stats["adaptation"] = adaptation.stats()
        stats.update(device=engine.device, publish_addr=publisher.endpoint, source_kind=kind,
                     camera_motion=motion_spec, record=args.record)
        if vmc is not None:
            stats["vmc"] = {"to": vmc.address, "bundles": vmc.sent, "poses": vmc.poses, "errors": vmc.errors}
        if recorder is not None:
            recorder.close()  # now, so the summary can say where the recording ended up
            stats.update(recorded=recorder.written, record_errors=recorder.errors, record_error=recorder.last_error,
                         recorded_to=str(recorder.final_path) if recorder.final_path else None)
        report = getattr(camera_motion, "report", None)
        if callable(report):
            stats["camera_motion_report"] = report()
        stats["warnings"] = run_warnings(stats, source)
        return stats
    finally:
        for obj in reversed(closers):
            try:
                obj.close()
            except Exception as exc:  # closing must not hide the run's result
                log.debug("close %s: %s", type(obj).__name__, exc)


def run_warnings(stats: dict[str, Any], source: Any) -> list[str]:
    """What went quietly wrong, for the summary (each also makes the exit status 1)."""
    out = []
    if stats["frames"] == 0:
        out.append("no frame was processed (nothing decodable from the source?)")
    incomplete = getattr(source, "incomplete", None)
    if incomplete:
        out.append(incomplete)
    gyro = stats.get("camera_motion_report") or {}
    if gyro.get("coverage_pct") is not None and gyro["coverage_pct"] < 50.0:
        out.append(f"gyro {gyro['source']} covered only {gyro['coverage_pct']:.0f} % of frames "
                   f"({gyro['samples']} samples): the rest was treated as a static camera")
    return out


def exit_status(stats: dict[str, Any]) -> int:
    """0 for a run that did what was asked; 1 when data was lost (recording errors, nothing processed, a source
    that ended early)."""
    return 1 if stats.get("record_errors") or stats.get("warnings") else 0


#: Stop signals seen by the running command (main keeps its handler installed after one; see on_signal).
_SIGNALS_SEEN = [0]


def main(argv: list[str] | None = None, prog: str = "run_live.py") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _SIGNALS_SEEN[0] = 0
    try:
        return _run_and_report(args, prog)
    finally:
        if not _SIGNALS_SEEN[0]:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        else:
            # The run has stopped and reported; a late stop signal has nothing left to stop. Ignored, not merely
            # left to on_signal: Python's finalizer resets Python-level handlers to the default action, which
            # would kill the exiting process with -2 (it keeps SIG_IGN as it is).
            for sig in saved:
                signal.signal(sig, signal.SIG_IGN)


def _run_and_report(args: argparse.Namespace, prog: str) -> int:
    try:
        stats = run(args)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if args.json_stats:
        print(json.dumps(stats), flush=True)
        print(human_summary(stats), file=sys.stderr)
    else:
        print(human_summary(stats), flush=True)
    return exit_status(stats)


if __name__ == "__main__":
    sys.exit(main(prog="python -m stream"))
