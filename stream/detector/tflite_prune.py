"""Drop outputs nobody reads from a .tflite model, with every operator that only they need.

Why: LiteRT runs a model's whole execution plan whatever the caller reads. BlazePose's landmark network also
decodes a 256x256 person-segmentation mask that the loop never uses; without that branch (46 of its 332
operators, mostly full-resolution element-wise work) the network costs ~35 % less CPU per crop and its
other outputs are bit-identical (`tests/test_multi_person.py` compares them).

Rewriting uses the flatbuffer schema that ships in the `ai-edge-litert` wheel (`schema_py_generated`); the
file on disk is never changed, the pruned model lives in memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable


def prune_outputs(path: str | Path, drop_shapes: Iterable[tuple[int, ...]]) -> bytes:
    """The model at `path` without the outputs of the given shapes and the operators only they depend on.

    Raises ValueError when nothing would be left, ImportError when the wheel lacks the schema module.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    drop = {tuple(int(d) for d in s) for s in drop_shapes}
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(Path(path).read_bytes(), 0))
    if len(model.subgraphs) != 1:
        raise ValueError(f"{path}: expected one subgraph, got {len(model.subgraphs)}")
    graph = model.subgraphs[0]
    keep = [t for t in graph.outputs if tuple(int(d) for d in graph.tensors[t].shape) not in drop]
    if not keep:
        raise ValueError(f"{path}: dropping {sorted(drop)} leaves no output")
    producer = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}
    needed: set[int] = set()
    stack = list(keep)
    while stack:
        op = producer.get(stack.pop())
        if op is not None and op not in needed:
            needed.add(op)
            stack.extend(t for t in graph.operators[op].inputs if t >= 0)
    graph.operators = [op for i, op in enumerate(graph.operators) if i in needed]  # execution order kept
    graph.outputs = keep
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


__all__ = ["prune_outputs"]
