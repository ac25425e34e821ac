"""Checkpoint -> deployable artifacts: an ONNX step graph (`python -m export onnx`) and a TensorRT engine
(`python -m export tensorrt`), each checked for numerical parity before it is trusted.

Kept import-light (no torch at package import): `engines/` reads `export.metadata` and `export.tensorrt_runtime`.
"""
