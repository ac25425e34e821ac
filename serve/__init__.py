"""Serve the step model from NVIDIA Triton (through PyTriton): many camera workers, one batched model.

`python -m serve` starts a Triton Inference Server whose model runs the exported step graph on onnxruntime;
camera workers reach it with `engines.triton_engine.TritonEngine` (`run_live.py --engine triton --triton-url ...`).
The deployment picture and the production variant (NGC Triton, onnxruntime / TensorRT backends): docs/scaling.md.
"""
