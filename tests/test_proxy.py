"""The fan-out proxy on loopback: many camera publishers in, camera-id topics, many subscribers out."""
from __future__ import annotations

import threading
import time

import pytest
import zmq

from stream.protocol import PoseMessage
from stream.proxy import Proxy, camera_of, connect_security
from stream.proxy import main as proxy_main
from stream.publisher import Publisher, camera_topic, check_camera_id
from stream.subscribe import Subscriber


@pytest.fixture()
def proxy():
    with Proxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") as p:
        thread = threading.Thread(target=p.run, daemon=True)
        thread.start()
        yield p
        p.stop()
        thread.join(5)


def _drain(sub: Subscriber, until: float) -> list:
    got = []
    while time.monotonic() < until:
        r = sub.recv(timeout=0.05)
        if r is not None:
            got.append(r)
    return got


def _publish_until_seen(pubs: list[Publisher], subs: list[Subscriber], timeout: float = 10.0) -> None:
    """ZeroMQ drops what is sent before subscriptions have travelled upstream: send probes until each reads one."""
    seen = [False] * len(subs)
    deadline = time.monotonic() + timeout
    while not all(seen) and time.monotonic() < deadline:
        for pub in pubs:
            pub.publish(PoseMessage(seq=0, track=0, t_capture=time.monotonic(), status="lost"))
        for i, sub in enumerate(subs):
            while sub.recv(timeout=0.02) is not None:
                seen[i] = True
    assert all(seen), "subscriptions never reached the cameras through the proxy"


def test_cameras_fan_out_with_camera_topics(proxy: Proxy) -> None:
    cams = [Publisher(connect=proxy.cameras_endpoint, camera_id=f"cam{i}", hwm=256) for i in range(3)]
    legacy = Publisher(connect=proxy.cameras_endpoint, hwm=256)  # one-camera topics pose/<track> still pass
    everyone = Subscriber(proxy.subscribers_endpoint, rcvhwm=10000)
    only_cam1 = Subscriber(proxy.subscribers_endpoint, topic=b"pose/cam1/", rcvhwm=10000)
    try:
        _publish_until_seen(cams + [legacy], [everyone, only_cam1])
        time.sleep(0.2)
        _drain(everyone, time.monotonic() + 0.2)
        _drain(only_cam1, time.monotonic() + 0.2)
        for seq in range(1, 41):
            for pub in cams + [legacy]:
                for track in (0, 1):
                    pub.publish(PoseMessage(seq=seq, track=track, t_capture=time.monotonic(), status="lost"))
            time.sleep(0.001)
        all_msgs = _drain(everyone, time.monotonic() + 1.5)
        cam1 = _drain(only_cam1, time.monotonic() + 0.3)
    finally:
        for s in (everyone, only_cam1):
            s.close()
        for p in cams + [legacy]:
            p.close()
    topics = {r.topic for r in all_msgs}
    assert {camera_topic(f"cam{i}", t) for i in range(3) for t in (0, 1)} <= topics
    assert {b"pose/0", b"pose/1"} <= topics
    assert len(all_msgs) == 40 * 4 * 2  # every message of every camera, none lost on loopback
    assert len(cam1) == 40 * 2 and {camera_of(r.topic) for r in cam1} == {"cam1"}
    stats = proxy.stats.as_dict()
    assert stats["per_camera"]["cam0"] >= 80 and stats["per_camera"][""] >= 80
    assert stats["subscriptions"] >= 2


def test_curve_proxy_accepts_listed_subscribers_only(tmp_path) -> None:
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    with Proxy("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", curve_secret_key=server_secret,
               curve_allowed_clients=[client_public]) as p:
        thread = threading.Thread(target=p.run, daemon=True)
        thread.start()
        cam = Publisher(connect=p.cameras_endpoint, camera_id="studio-A", curve_server_key=server_public)
        allowed = Subscriber(p.subscribers_endpoint, curve=(server_public, client_public, client_secret))
        try:
            _publish_until_seen([cam], [allowed])
            assert p.stats.per_camera.get("studio-A", 0) >= 1
        finally:
            cam.close()
            allowed.close()
            p.stop()
            thread.join(5)


def test_refusals(capsys) -> None:
    assert proxy_main(["--subscribers", "tcp://0.0.0.0:5999"]) == 2
    assert "unencrypted" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unencrypted"):
        connect_security("tcp://10.1.2.3:5555", None, False)
    assert connect_security("tcp://127.0.0.1:5555", None, False) == {"connect": "tcp://127.0.0.1:5555"}
    for bad in ("", "a/b", "x" * 65, "caméra"):
        with pytest.raises(ValueError):
            check_camera_id(bad)
    assert camera_topic("cam-1.a", 7) == b"pose/cam-1.a/7"
    assert camera_of(b"pose/cam-1.a/7") == "cam-1.a" and camera_of(b"pose/7") == ""
    with pytest.raises(ValueError, match="connects to a proxy"):
        Publisher("tcp://127.0.0.1:*", curve_server_key=zmq.curve_keypair()[0])


def test_run_live_publishes_through_the_proxy(proxy: Proxy) -> None:
    from stream.__main__ import main as live_main

    sub = Subscriber(proxy.subscribers_endpoint, topic=b"pose/camA/", rcvhwm=1000)
    try:
        rc = live_main(["--source", "synthetic", "--fast", "--max-frames", "8", "--no-refine", "--proxy",
                        proxy.cameras_endpoint, "--camera-id", "camA", "--wait-subscribers", "5",
                        "--log-level", "warning"])
        got = _drain(sub, time.monotonic() + 1.0)
    finally:
        sub.close()
    assert rc == 0
    assert got and all(camera_of(r.topic) == "camA" for r in got)
    assert {r.msg.status for r in got} & {"init", "tracking"}
