"""Towers to ONNX files: export, fuse, fp16, int8.

- ``export_tower``: ``torch.onnx.export`` with the TorchScript exporter (``dynamo=False``) at opset
  17, dynamic batch (and dynamic sequence length where the tower allows it).
- ``optimize``, ``to_fp16``, ``to_int8``, ``op_counts`` and ``INT8_OPTIONS`` live in
  mmsearch/models/variants.py (no torch there), shared with `mmsearch models pull`, so a pulled
  bundle's variants are made exactly as an exported one's: attention, layer norm
  (Skip/LayerNormalization) and QuickGelu get fused, the counts go to the manifest; fp16 for the
  CUDA provider; int8 from the plain export by default (see INT8_OPTIONS for why).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from mmsearch.models.variants import (  # noqa: F401 (re-exported: the export step's names for them)
    FUSED_OPS,
    INT8_OPTIONS,
    attention_count,
    op_counts,
    optimize,
    quiet,
    to_fp16,
    to_int8,
)

OPSET = 17


def export_tower(
    module: torch.nn.Module,
    example: Sequence[torch.Tensor],
    path: Path,
    input_names: Sequence[str],
    output_name: str,
    dynamic_axes: dict[str, dict[int, str]],
) -> Path:
    """torch.onnx.export of one tower (TorchScript exporter, opset 17)."""
    with quiet(), torch.inference_mode():
        torch.onnx.export(
            module,
            tuple(example),
            str(path),
            input_names=list(input_names),
            output_names=[output_name],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    return path
