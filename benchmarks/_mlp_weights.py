"""Rebuild a bundle's ``nn.Sequential`` MLP from its ``weights.safetensors`` (no pickle).

Shared by the benchmark's peer servers, which must not import hybridnb (the KServe peer
runs in a venv of its own): each serves exactly the weights hybridnb serves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch


def load_mlp(bundle: str | Path) -> tuple[str, torch.nn.Sequential]:
    """The bundle's model name and its ``Linear`` layers with ``ReLU`` between them."""
    import safetensors.torch

    bundle = Path(bundle)
    name = json.loads((bundle / "hybridnb-model.json").read_text())["name"]
    tensors = safetensors.torch.load_file(str(bundle / "weights.safetensors"))
    indices = sorted({int(k.split(".")[0]) for k in tensors})
    layers: list[torch.nn.Module] = []
    for n, i in enumerate(indices):
        weight, bias = tensors[f"{i}.weight"], tensors[f"{i}.bias"]
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict({"weight": weight, "bias": bias})
        layers.append(linear)
        if n < len(indices) - 1:
            layers.append(torch.nn.ReLU())
    return name, torch.nn.Sequential(*layers).eval()
