"""Live browser viewer: the pose stream drawn in 3D (each tracked person, the ground grid, root trails, foot
contacts), fed by a WebSocket bridge from ZeroMQ.

    python -m stream.viewer build                                      # once: three.js from npm -> static/vendor
    python -m stream.viewer --sub tcp://127.0.0.1:5556 --port 8080     # then open http://127.0.0.1:8080/

Server: `stream.viewer.server`; front end: static/index.html + static/viewer.js; build: `stream.viewer.build`.
"""
