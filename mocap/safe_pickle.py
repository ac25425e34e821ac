"""A restricted unpickler for SMPL model files: numpy arrays, scipy.sparse matrices and chumpy stand-ins only.

Why: SMPL is distributed as a Python 2 pickle, and a plain ``pickle.load`` runs whatever callable the file names
(``os.system``, ``builtins.open``, ...), so a ``SMPL_NEUTRAL.pkl`` from an untrusted download could run code on
load. Every global a pickle references goes through ``find_class``; this one admits the handful an SMPL file
needs and refuses anything else with ``UnpicklingError`` naming it. chumpy objects (``chumpy.*``) become a
``ChumpyStub`` that only keeps its pickled state, so chumpy (unmaintained, and itself arbitrary code) is never
imported.
"""
from __future__ import annotations

import pickle
from typing import IO, Any

__all__ = ["ChumpyStub", "SafeUnpickler", "safe_load"]

#: Python 2 module names (SMPL's files) -> Python 3 ones.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

#: (module, name) pairs an SMPL file may reference. numpy moved its core to numpy._core in 2.0: both spellings.
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    [(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
     for name in ("_reconstruct", "scalar")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
       ("numpy._core.numeric", "_frombuffer"),
       ("_codecs", "encode"),  # protocol 2 stores raw bytes as latin-1 text re-encoded on load
       ("copyreg", "_reconstructor"), ("builtins", "object"),
       ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"), ("builtins", "list"),
       ("builtins", "tuple")]
    + [(module, f"{kind}_matrix") for kind in ("csc", "csr", "coo")
       for module in ("scipy.sparse", f"scipy.sparse.{kind}", f"scipy.sparse._{kind}")]
)


class ChumpyStub:
    """Stands in for a chumpy object: keeps the pickled state (a dict whose ``x`` is the array) and nothing else."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only the globals in ``_ALLOWED`` (plus chumpy -> ``ChumpyStub``)."""

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpyStub
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: an SMPL file holds only numpy arrays, scipy.sparse matrices "
                "and chumpy arrays (the file may be malicious)")
        return super().find_class(module, name)


def safe_load(fh: IO[bytes]) -> Any:
    """Unpickle an SMPL-style file (Python 2 strings decoded as latin-1); refuses any other class or callable."""
    return SafeUnpickler(fh, encoding="latin1").load()
