"""Serving through a real Triton Inference Server (PyTriton's bundled tritonserver) on loopback, no mocks.

Four simulated camera workers with up to three tracks each step through one server: parity with the in-process
onnxruntime engine, cross-camera dynamic batching in the server's own statistics, tracks appearing and
disappearing, and a server restart mid-stream that the workers ride out with their state intact.
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pytriton", reason="the serve extra (nvidia-pytriton) is not installed")

import engines  # noqa: E402
from engines.base import EngineLoadError  # noqa: E402
from engines.triton_engine import TritonEngine, TritonUnavailable, correlation_id, parse_url  # noqa: E402
from serve.process import ServerProcess, free_ports  # noqa: E402
from serve.stats import model_stats  # noqa: E402

CAMERAS = 4
FRAMES = 24
RESTART_AT = 12
TOLERANCE = 1e-5


def track_schedule(camera: int) -> dict[int, range]:
    """Frames each track is seen in: track 1 leaves, tracks 2 and 3 arrive; never more than 3 at once."""
    shift = camera % 3
    return {0: range(0, FRAMES), 1: range(0, 7 + shift), 2: range(3 + shift, FRAMES), 3: range(9 + shift, FRAMES)}


def track_inputs(camera: int, track: int, frame: int, width: int) -> dict[str, np.ndarray]:
    """Deterministic inputs (1, W) / (1, 6) of one track at one frame."""
    rng = np.random.default_rng([camera, track, frame])
    return {"x": (0.4 * rng.standard_normal((1, width))).astype(np.float32),
            "omega": (0.05 * rng.standard_normal((1, 6))).astype(np.float32)}


def run_worker(engine: TritonEngine, camera: int, frames: range, states: dict[int, dict[str, np.ndarray]],
               outputs: dict, sync: threading.Barrier) -> None:
    """One camera: a single request per frame with every visible track's inputs and state (batch = tracks)."""
    width = engine.input_shapes["x"][0]
    schedule = track_schedule(camera)
    for frame in frames:
        sync.wait(timeout=120)  # cameras tick together, so their requests meet in the batcher
        visible = [t for t, seen in schedule.items() if frame in seen]
        for gone in [t for t in states if t not in visible]:
            del states[gone]  # track lost: its memory goes with it
        for t in visible:
            states.setdefault(t, engine.initial_state(1))
        feeds = [track_inputs(camera, t, frame, width) for t in visible]
        batch_in = {k: np.concatenate([f[k] for f in feeds]) for k in ("x", "omega")}
        batch_state = {k: np.concatenate([states[t][k] for t in visible]) for k in engine.state_shapes}
        out, new_state = engine.step(batch_in, batch_state)
        for i, t in enumerate(visible):
            states[t] = {k: v[i:i + 1] for k, v in new_state.items()}
            outputs[(camera, t, frame)] = {k: v[i] for k, v in out.items()}


def reference(camera: int, track: int, frames: range, local: engines.Engine) -> dict[int, dict[str, np.ndarray]]:
    width = local.input_shapes["x"][0]
    state, out = local.initial_state(1), {}
    for frame in frames:
        o, state = local.step(track_inputs(camera, track, frame, width), state)
        out[frame] = {k: v[0] for k, v in o.items()}
    return out


@pytest.fixture()
def ports() -> list[int]:
    return free_ports(3)


def test_cameras_through_triton_with_restart(ports: list[int], capsys: pytest.CaptureFixture) -> None:
    server = ServerProcess(ports, ["--max-batch", "16", "--queue-delay-us", "4000"])
    try:
        # Cameras 0-2 talk HTTP, camera 3 gRPC: both front ends of the same model.
        workers = [TritonEngine(server.grpc_url if c == CAMERAS - 1 else server.url, connect_s=30, retry_s=90)
                   for c in range(CAMERAS)]
        local = engines.load("default", prefer=["onnxruntime"])
        assert workers[0].input_shapes == local.input_shapes  # x width read from the served graph
        assert workers[-1].state_shapes == workers[0].state_shapes == local.state_shapes
        assert workers[0].model_id == local.model_id

        states: list[dict] = [{} for _ in range(CAMERAS)]
        outputs: dict = {}
        errors: list[BaseException] = []

        def phase(frames: range, sync: threading.Barrier) -> list[threading.Thread]:
            def body(c: int) -> None:
                try:
                    run_worker(workers[c], c, frames, states[c], outputs, sync)
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)
                    sync.abort()

            threads = [threading.Thread(target=body, args=(c,), daemon=True) for c in range(CAMERAS)]
            for t in threads:
                t.start()
            return threads

        for t in phase(range(0, RESTART_AT), threading.Barrier(CAMERAS)):
            t.join(120)
        assert not errors, errors
        before = model_stats(server.url, server.token)

        # Restart mid-stream: stop the server, let the workers run into the dead port, start a new one.
        server.stop()
        threads = phase(range(RESTART_AT, FRAMES), threading.Barrier(CAMERAS))
        time.sleep(0.5)
        server = ServerProcess(ports, ["--max-batch", "16", "--queue-delay-us", "4000"])
        for t in threads:
            t.join(120)
        assert not errors, errors
        after = model_stats(server.url, server.token)

        # The live command on this server (synthetic person: no detector), end to end.
        from stream.__main__ import main as live_main

        capsys.readouterr()
        assert live_main(["--source", "synthetic", "--fast", "--max-frames", "6", "--no-refine", "--engine", "triton",
                          "--triton-url", server.url, "--publish", "tcp://127.0.0.1:*", "--json-stats",
                          "--log-level", "warning"]) == 0
        live = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert live["engine"] == "triton" and live["frames"] == 6 and not any(live["errors"].values())
        assert live["statuses"]["tracking"] + live["statuses"]["init"] >= 5

                # Refusals, with the reason: bad input before it travels (state untouched), swaps, a model not served.
        width = local.input_shapes["x"][0]
        with pytest.raises(ValueError, match="x"):
            workers[0].step({"x": np.zeros((2, width + 5), np.float32), "omega": np.zeros((2, 6), np.float32)},
                            workers[0].initial_state(2))
        with pytest.raises(ValueError, match="Triton"):
            workers[0].swap(b"weights")
        with pytest.raises(EngineLoadError, match="not ready"):
            TritonEngine(server.url, model="no_such_model", connect_s=1)
    finally:
        server.stop()
    with pytest.raises(EngineLoadError, match="after 0.5 s"):
        TritonEngine(server.url, connect_s=0.5)
    # A server that stays down: the step gives up after retry_s, later steps after a short window only.
    probe = workers[0]
    probe.retry_s = 2.0
    feed = {"x": np.zeros((1, probe.input_shapes["x"][0]), np.float32), "omega": np.zeros((1, 6), np.float32)}
    for limit in (5.0, 1.2):  # a second full 2 s window would fail the 1.2 s bound
        t0 = time.monotonic()
        with pytest.raises(TritonUnavailable):
            probe.step(feed, probe.initial_state(1))
        assert time.monotonic() - t0 < limit

    # Every worker noticed the restart and reconnected, without losing a frame or its tracks' memory.
    assert all(w.reconnects >= 1 and w.retries >= 1 for w in workers), [(w.retries, w.reconnects) for w in workers]
    # Parity with the in-process engine, per track over its whole life (both sides of the restart).
    worst = 0.0
    for camera in range(CAMERAS):
        for track, frames in track_schedule(camera).items():
            ref = reference(camera, track, frames, local)
            for frame in frames:
                got = outputs[(camera, track, frame)]
                worst = max(worst, max(float(np.max(np.abs(got[k] - ref[frame][k]))) for k in ref[frame]))
    assert worst < TOLERANCE, worst
    # The server merged requests of several cameras: executions with more rows than one camera ever sends (3).
    for stats in (before, after):
        assert stats["inference_count"] > 0
        assert max(stats["batch_sizes"]) > 3, stats
        assert stats["rows_per_execution"] > 3, stats
        assert stats["requests"] > stats["execution_count"], stats


def test_url_and_correlation_ids() -> None:
    assert parse_url("grpc://10.0.0.2:8001") == ("grpc", "10.0.0.2:8001")
    assert parse_url("127.0.0.1:8000") == ("http", "127.0.0.1:8000")
    for bad in ("ftp://h:1", "http://h", "http://h:8000/v2"):
        with pytest.raises(ValueError):
            parse_url(bad)
    ids = {correlation_id(f"cam{c}", t, s) for c in range(8) for t in range(20) for s in (1, 2)}
    assert len(ids) == 8 * 20 * 2 and 0 not in ids and max(ids) < 1 << 64
    with pytest.raises(ValueError):
        correlation_id("cam0", 1 << 24, 1)


def test_export_repository_reads_in_tritonserver(tmp_path) -> None:
    """`python -m export triton` writes schema-valid configs; the bundled tritonserver (Python backend only) parses
    each one and stops only at the missing onnxruntime / tensorrt backend, while a typo fails at parsing."""
    import shutil
    import subprocess

    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from export.__main__ import main as export_main
    from export.triton_export import SEQUENCE_ORT, STATELESS_ORT, STATELESS_TRT
    from serve.triton_server import bundled_tritonserver

    repo = tmp_path / "model_repository"
    assert export_main(["triton", "--out", str(repo), "--max-batch", "32"]) == 0
    assert export_main(["triton", "--out", str(repo)]) == 2  # existing folders need --overwrite
    local = engines.load("default", prefer=["onnxruntime"])
    width = local.input_shapes["x"][0]
    configs = {}
    for name in (STATELESS_ORT, STATELESS_TRT, SEQUENCE_ORT):
        cfg = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        configs[name] = cfg
        assert cfg.max_batch_size == 32
        assert {t.name: list(t.dims) for t in cfg.input}["x"] == [width]  # read from the graph, not assumed
        assert cfg.parameters["livemocap_metadata"].string_value
    assert (repo / STATELESS_ORT / "1" / "model.onnx").is_file()
    assert (repo / SEQUENCE_ORT / "1" / "model.onnx").is_file()
    stateless, seq = configs[STATELESS_ORT], configs[SEQUENCE_ORT]
    assert stateless.dynamic_batching.max_queue_delay_microseconds == 500
    assert {t.name for t in stateless.input} == {"x", "omega", *local.state_shapes}
    assert {t.name for t in seq.input} == {"x", "omega"}
    states = {s.input_name: (s.output_name, list(s.dims), s.initial_state[0].zero_data)
              for s in seq.sequence_batching.state}
    assert states == {n: (f"{n}_out", list(shape), True) for n, shape in local.state_shapes.items()}
    assert configs[STATELESS_TRT].platform == "tensorrt_plan"

    broken = repo / "livemocap_typo"
    shutil.copytree(repo / STATELESS_ORT, broken)
    text = (broken / "config.pbtxt").read_text().replace('name: "livemocap"', 'name: "livemocap_typo"')
    (broken / "config.pbtxt").write_text(text.replace("max_batch_size:", "max_batch_sizes:"))
    binary, env = bundled_tritonserver()
    http, grpc, metrics = free_ports(3)
    run = subprocess.run([str(binary), "--model-repository", str(repo), "--backend-directory",
                          str(binary.parents[1] / "backends"), "--http-port", str(http), "--grpc-port", str(grpc),
                          "--metrics-port", str(metrics), "--http-address", "127.0.0.1", "--grpc-address",
                          "127.0.0.1", "--exit-on-error=true"], env=env, capture_output=True, text=True, timeout=60)
    log = run.stdout + run.stderr
    assert run.returncode != 0  # nothing it can run: no onnxruntime / tensorrt backend in the wheel
    for name, backend in ((STATELESS_ORT, "onnxruntime"), (STATELESS_TRT, "tensorrt"), (SEQUENCE_ORT, "onnxruntime")):
        assert f"failed to load '{name}' version 1: Invalid argument: unable to find backend library for backend " \
               f"'{backend}'" in log, log[-2000:]
    assert "failed to read text proto" in log and "livemocap_typo" in log
    for name in (STATELESS_ORT, STATELESS_TRT, SEQUENCE_ORT):
        assert f"failed to read text proto from {repo / name / 'config.pbtxt'}" not in log


def test_serve_cli_refusals(capsys) -> None:
    from serve.__main__ import main as serve_main

    assert serve_main(["--model", "/no/such.onnx"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert serve_main(["--http-port", "0"]) == 2
    assert serve_main(["--http-port", "9000", "--grpc-port", "9000"]) == 2
    assert serve_main(["stats"]) == 2
    assert "--access-token" in capsys.readouterr().err


def test_serve_refuses_a_port_in_use() -> None:
    import socket

    from serve.__main__ import main as serve_main

    http, grpc, metrics = free_ports(3)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", http))
        holder.listen()
        t0 = time.monotonic()
        assert serve_main(["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)]) == 2
        assert time.monotonic() - t0 < 30  # before any model or server starts
