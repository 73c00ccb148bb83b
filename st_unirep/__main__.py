"""``python -m st_unirep``: build the tiny offline Qwen2-VL, encode text, an image and a text+image pair.

Shows the whole pipeline end to end with no downloads: shapes, norms, the calibrated score matrix and a
``truncate_dim`` round trip. Random weights, so the scores mean nothing yet; training replaces this job.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
from PIL import Image, ImageDraw

from st_unirep import build_model, calibrated_similarity
from st_unirep.testing import build_tiny_qwen2_vl


def _demo_image(colour: str) -> Image.Image:
    image = Image.new("RGB", (160, 112), "white")
    ImageDraw.Draw(image).ellipse((40, 20, 120, 92), fill=colour)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="unirep-m", help="vipolyqwen | unirep | unirep-m | viuniembed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backbone = build_tiny_qwen2_vl(f"{tmp}/tiny-qwen2-vl")
        model = build_model(backbone, args.preset, output_dim=64)
        inputs = {
            "text": "Một quả bóng màu đỏ trên nền trắng.",
            "image": _demo_image("red"),
            "text+image": {"text": "a red ball", "image": _demo_image("red")},
            "other image": _demo_image("blue"),
        }
        embeddings = model.encode(list(inputs.values()))
        print(f"preset={args.preset} backbone=tiny random Qwen2-VL (offline)")
        for (name, _), vector in zip(inputs.items(), embeddings, strict=False):
            print(f"  {name:<12} shape={vector.shape} norm={np.linalg.norm(vector):.4f}")
        scores = calibrated_similarity(embeddings, embeddings).numpy()
        print("calibrated score (cos+1)/2:")
        print("  " + " ".join(f"{name:>12}" for name in inputs))
        for name, row in zip(inputs, scores, strict=False):
            print(f"  {name:<12}" + " ".join(f"{value:12.4f}" for value in row))
        truncated = model.encode(list(inputs.values()), truncate_dim=16)
        print(f"truncate_dim=16 -> shape {truncated.shape}, norms {np.round(np.linalg.norm(truncated, axis=1), 4)}")


if __name__ == "__main__":
    main()
