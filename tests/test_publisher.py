"""Wire protocol, publisher and subscriber over real loopback sockets (random free ports, no network)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq

from stream.protocol import ARRAY_SHAPES, PoseMessage, decode, encode, topic, validate
from stream.publisher import Publisher, curve_keypair
from stream.subscribe import AuthError, Subscriber, subscribe

REPO = Path(__file__).resolve().parents[1]
ANY_PORT = "tcp://127.0.0.1:*"


def full_message(seq: int = 7, track: int = 2) -> PoseMessage:
    rng = np.random.default_rng(seq)
    arrays = {key: rng.uniform(0.0, 1.0, size=shape) for key, shape in ARRAY_SHAPES.items()}
    return PoseMessage.from_arrays(seq=seq, track=track, t_capture=time.monotonic(), model="m@g3", **arrays)


def wait_joined(pub: Publisher, sub: Subscriber, track: int = 0) -> None:
    """Publish until the subscriber sees something (ZeroMQ subscriptions propagate asynchronously)."""
    for _ in range(300):
        pub.publish(PoseMessage(seq=0, track=track, t_capture=time.monotonic(), status="init"))
        if sub.recv(timeout=0.01) is not None:
            while sub.recv(timeout=0.05) is not None:  # drain the rest of the warm-up
                pass
            return
    raise AssertionError("subscriber never joined")


# ------------------------------------------------------------------------------------------------ protocol


def test_round_trip_keeps_every_field_at_float32_precision() -> None:
    msg = validate(full_message())
    back = decode(encode(msg))
    assert back == msg
    arrays = back.arrays()
    assert arrays["pose_aa"].shape == (24, 3) and arrays["pose_quat"].shape == (24, 4)
    assert arrays["kp2d"].shape == (21, 3) and arrays["pose_aa"].dtype == np.float32
    raw = msgspec.msgpack.decode(encode(msg))  # any msgpack reader sees a plain map of the documented keys
    assert list(raw) == ["v", "seq", "track", "t_capture", "t_publish", "status", "pose_aa", "pose_quat", "betas",
                         "root_trans", "joints", "contact", "cam_trans", "kp2d", "model", "cam_root_aa",
                         "camera_motion", "heartbeat"]
    assert raw["v"] == 1 and len(raw["pose_quat"]) == 96 and len(raw["kp2d"]) == 63


def test_lost_message_is_small_and_valid() -> None:
    msg = validate(PoseMessage(seq=3, track=0, t_capture=1.5, status="lost"))
    assert len(encode(msg)) < 200 and decode(encode(msg)).pose_aa == []


def test_unknown_keys_are_ignored_and_wrong_types_rejected() -> None:
    raw = msgspec.msgpack.decode(encode(full_message()))
    raw.update(v=2, hands=[0.1] * 90, extra={"nested": True})
    back = decode(msgspec.msgpack.encode(raw))
    assert back.v == 2 and back.seq == 7 and len(back.joints) == 72
    raw["seq"] = "seven"
    with pytest.raises(ValueError, match="not a v1 pose message"):
        decode(msgspec.msgpack.encode(raw))
    with pytest.raises(ValueError):
        decode(b"\xc1garbage")


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(status="running"), "status"),
        (dict(joints=[0.0] * 71), "joints"),
        (dict(betas=[float("nan")] * 10), "betas: non-finite"),
        (dict(contact=[0.5, 0.5, 1.5, 0.0]), "contact"),
        (dict(seq=-1), "seq"),
    ],
)
def test_validate_names_the_problem(change: dict, match: str) -> None:
    msg = msgspec.structs.replace(full_message(), **change)
    with pytest.raises(ValueError, match=match):
        validate(msg)
    with pytest.raises(ValueError, match="pose_aa"):
        validate(PoseMessage(seq=0, track=0, t_capture=0.0, status="tracking"))


def test_topic_and_from_arrays_checks() -> None:
    assert topic(12) == b"pose/12"
    with pytest.raises(ValueError):
        topic(-1)
    with pytest.raises(ValueError, match="unknown array fields"):
        PoseMessage.from_arrays(seq=0, track=0, t_capture=0.0, pose=np.zeros(72))


# ------------------------------------------------------------------------------------------ publisher / sub


def test_publisher_without_subscribers_never_blocks() -> None:
    with Publisher(ANY_PORT) as pub:
        msg = full_message()
        start = time.perf_counter()
        for seq in range(10_000):
            msg.seq = seq
            assert pub.publish(msg)
        elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"10k publishes took {elapsed:.2f} s"
    assert pub.sent == 10_000 and pub.dropped == 0


def test_subscribe_iterator_receives_over_tcp_loopback() -> None:
    with Publisher(ANY_PORT) as pub:
        with Subscriber(pub.endpoint) as probe:
            wait_joined(pub, probe)
        received: list[PoseMessage] = []

        def reader() -> None:
            for msg in subscribe(pub.endpoint, topic=b"pose/2", timeout=2.0):
                received.append(msg)
                if len(received) == 5:
                    return

        thread = threading.Thread(target=reader)
        thread.start()
        deadline = time.monotonic() + 5.0
        seq = 0
        while thread.is_alive() and time.monotonic() < deadline:
            pub.publish(full_message(seq=seq, track=2))
            pub.publish(full_message(seq=seq, track=3))  # another track: filtered out by topic
            seq += 1
            time.sleep(0.005)
        thread.join(1.0)
    assert len(received) == 5 and {m.track for m in received} == {2}
    seqs = [m.seq for m in received]
    assert seqs == sorted(seqs) and all(m.t_publish >= m.t_capture for m in received)


def test_subscribe_gives_up_after_timeout() -> None:
    with Publisher(ANY_PORT) as pub:
        start = time.monotonic()
        assert list(subscribe(pub.endpoint, timeout=0.2)) == []
        assert 0.15 < time.monotonic() - start < 2.0


@pytest.mark.parametrize("nodrop", [False, True])
def test_slow_subscriber_does_not_slow_the_publisher(nodrop: bool) -> None:
    """A reader taking one message per 50 ms: publishing stays fast and the loss is visible somewhere."""
    with Publisher(ANY_PORT, hwm=4, nodrop=nodrop) as pub, Subscriber(pub.endpoint, rcvhwm=4) as sub:
        wait_joined(pub, sub)
        seen: list[int] = []
        stop = threading.Event()

        def slow_reader() -> None:
            while not stop.is_set():
                got = sub.recv(timeout=0.2)
                if got is not None:
                    seen.append(got.msg.seq)
                time.sleep(0.05)

        thread = threading.Thread(target=slow_reader)
        thread.start()
        msg = full_message(track=0)
        start = time.perf_counter()
        for seq in range(1, 3001):
            msg.seq = seq
            pub.publish(msg)
            if seq % 500 == 0:
                time.sleep(0.05)  # spread over a few of the reader's 50 ms naps
        rate = 3000 / (time.perf_counter() - start)
        time.sleep(0.3)
        stop.set()
        thread.join(2.0)
    assert rate > 2000, f"publish rate fell to {rate:.0f}/s"
    assert 0 < len(seen) < 300
    assert max(seen) > len(seen)  # later messages arrived while most were dropped: seq gaps
    if nodrop:
        assert pub.dropped > 1000 and pub.sent + pub.dropped >= 3000
    else:
        assert pub.dropped == 0  # drops happened per subscriber, invisible to the publisher by design


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")
def test_curve_encrypts_and_allow_list_refuses_strangers() -> None:
    server_public, server_secret = curve_keypair()
    client_public, client_secret = curve_keypair()
    with Publisher(ANY_PORT, curve_secret_key=server_secret, curve_allowed_clients=[client_public]) as pub:
        with Subscriber(pub.endpoint, curve=(server_public, client_public, client_secret)) as friend:
            wait_joined(pub, friend)
        with Subscriber(pub.endpoint, curve=server_public) as stranger:  # ephemeral, unlisted key
            with pytest.raises(AuthError, match="allow-list"):  # refused, and told so (not a silent time-out)
                for seq in range(200):
                    pub.publish(full_message(seq=seq, track=0))
                    assert stranger.recv(timeout=0.02) is None
    with pytest.raises(ValueError, match="curve_allowed_clients"):
        Publisher(ANY_PORT, curve_allowed_clients=[client_public])


# -------------------------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "stream.subscribe", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _feed_until_exit(pub: Publisher, proc: subprocess.Popen, timeout: float = 10.0) -> tuple[str, str]:
    deadline, seq = time.monotonic() + timeout, 0
    while proc.poll() is None and time.monotonic() < deadline:
        pub.publish(full_message(seq=seq, track=1))
        seq += 1
        time.sleep(0.01)
    return proc.communicate(timeout=5)


def test_cli_count_and_json() -> None:
    with Publisher(ANY_PORT) as pub:
        proc = _cli(pub.endpoint, "--count", "5", "--json", "--timeout", "8")
        out, err = _feed_until_exit(pub, proc)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert len(lines) == 6 and all(line["track"] == 1 and len(line["pose_aa"]) == 72 for line in lines[:5])
    assert all(line["t_receive"] >= line["t_publish"] for line in lines[:5])
    summary = lines[-1]["summary"]
    assert summary["messages"] == 5 and summary["seq_gaps"] == 0
    assert 0 < summary["latency_publish_ms"]["p50"] <= summary["latency_publish_ms"]["p99"] < 1000


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_human_output_stops_cleanly_on_signals_and_timeout(sig: int) -> None:
    with Publisher(ANY_PORT) as pub:
        proc = _cli(pub.endpoint)
        stop = threading.Event()

        def feed() -> None:
            seq = 0
            while not stop.is_set():
                pub.publish(full_message(seq=seq, track=1))
                seq += 1
                time.sleep(0.01)

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            first = proc.stdout.readline()  # blocks until the subscriber printed a message
            proc.send_signal(sig)  # Ctrl-C, or a service manager's SIGTERM: summary, exit 0
            out, err = proc.communicate(timeout=5)
        finally:
            stop.set()
            feeder.join()
    assert proc.returncode == 0, err
    assert first.startswith("seq=") and "track=1 tracking root=(" in first
    assert "publish->receive ms: p50" in out.strip().splitlines()[-1]
    quiet = _cli("tcp://127.0.0.1:1", "--timeout", "0.3", "--json")  # nobody there
    out, _ = quiet.communicate(timeout=10)
    assert quiet.returncode == 1 and json.loads(out)["summary"]["messages"] == 0


def test_cli_signals_ask_the_loop_to_stop_and_a_second_one_forces_it() -> None:
    """The first Ctrl-C / SIGTERM only sets the loop's stop flag (no exception at an arbitrary bytecode, e.g.
    inside the message slots' lock handling); a second one raises KeyboardInterrupt; handlers are given back."""
    from stream.subscribe import _stop_on_signals

    stop = threading.Event()
    before = signal.getsignal(signal.SIGTERM)
    previous = _stop_on_signals(stop)
    try:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler) and signal.getsignal(signal.SIGINT) is handler
        handler(signal.SIGTERM, None)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    assert signal.getsignal(signal.SIGTERM) is before
