"""Build the viewer's front end: three.js from npm (pinned by web/package-lock.json) into static/vendor/.

    python -m stream.viewer build

Runs ``npm ci`` in stream/viewer/web when its node_modules do not hold the locked three.js, then copies the ES
modules the page imports (three.module.js, three.core.js, OrbitControls.js) and three's licence into
static/vendor/three/ (git-ignored). The page loads only these local files: no CDN, works offline. Needs Node.js
and npm at build time only; the viewer itself needs neither.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEB = HERE / "web"
STATIC = HERE / "static"
VENDOR = STATIC / "vendor" / "three"
#: node_modules/three file -> path under VENDOR (the page's import map points at these).
FILES = {
    "build/three.module.js": "three.module.js",
    "build/three.core.js": "three.core.js",
    "examples/jsm/controls/OrbitControls.js": "addons/controls/OrbitControls.js",
    "LICENSE": "LICENSE",
}


class BuildError(RuntimeError):
    """The front end could not be built (no npm, npm failed, a file missing)."""


def locked_version() -> str:
    """The three.js version web/package-lock.json pins."""
    lock = json.loads((WEB / "package-lock.json").read_text())
    return lock["packages"]["node_modules/three"]["version"]


def installed_version() -> str | None:
    """The three.js version in web/node_modules, None if absent."""
    manifest = WEB / "node_modules" / "three" / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.is_file() else None


def bundle_version() -> str | None:
    """The three.js version in static/vendor (what the viewer serves), None if it was never built."""
    marker = VENDOR / "VERSION"
    if not marker.is_file() or not all((VENDOR / dst).is_file() for dst in FILES.values()):
        return None
    return marker.read_text().strip()


def build(log=print) -> str:
    """Install (if needed) and copy; returns the three.js version now in static/vendor."""
    version = locked_version()
    if installed_version() != version:
        npm = shutil.which("npm")
        if npm is None:
            raise BuildError("npm not found: install Node.js (with npm) to build the viewer")
        log(f"npm ci in {WEB} (three {version})")
        proc = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"npm ci failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
        if installed_version() != version:
            raise BuildError(f"npm ci did not install three {version}")
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    for src, dst in FILES.items():
        target = VENDOR / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WEB / "node_modules" / "three" / src, target)
    (VENDOR / "VERSION").write_text(version + "\n")
    log(f"viewer front end built: three {version} in {VENDOR}")
    return version


__all__ = ["BuildError", "VENDOR", "build", "bundle_version", "locked_version"]
