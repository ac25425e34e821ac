"""Read a Triton model's execution statistics: how many requests, executions and what batch sizes ran.

Why: the point of serving many cameras from one model is that the dynamic batcher merges their requests; the
server's own counters are the proof (``inference_count`` rows over ``execution_count`` executions, and the
per-batch-size histogram), not a client-side guess.
"""
from __future__ import annotations

from typing import Any

from engines.triton_engine import TRITON_MODEL, parse_url


def model_stats(url: str, access_token: str | None = None, model: str = TRITON_MODEL) -> dict[str, Any]:
    """{"inference_count": rows stepped, "execution_count": model executions, "requests": successful requests,
    "batch_sizes": {rows per execution: executions}, "rows_per_execution": mean} over every version of MODEL."""
    import tritonclient.http as http

    protocol, address = parse_url(url)
    if protocol != "http":
        raise ValueError(f"{url}: statistics are read over HTTP (http://HOST:PORT)")
    client = http.InferenceServerClient(address)
    try:
        headers = {"triton-access-token": access_token} if access_token else None
        raw = client.get_inference_statistics(model, headers=headers)
    finally:
        client.close()
    inferences = executions = requests = 0
    sizes: dict[int, int] = {}
    for version in raw.get("model_stats", []):
        inferences += int(version.get("inference_count", 0))
        executions += int(version.get("execution_count", 0))
        requests += int(version.get("inference_stats", {}).get("success", {}).get("count", 0))
        for entry in version.get("batch_stats", []):
            size = int(entry["batch_size"])
            sizes[size] = sizes.get(size, 0) + int(entry.get("compute_infer", {}).get("count", 0))
    return {"model": model, "inference_count": inferences, "execution_count": executions, "requests": requests,
            "batch_sizes": dict(sorted(sizes.items())),
            "rows_per_execution": inferences / executions if executions else None}


__all__ = ["model_stats"]
