"""Image preprocessing shared by training (image folders) and serving (uploads).

One function turns encoded image bytes into the array a model was trained on,
so an uploaded PNG is resized and scaled exactly as the training images were.
"""

from __future__ import annotations

import io

import numpy as np


def load_image_file(
    content: bytes, size: tuple[int, int], channels: int, pixel_scale: float
) -> np.ndarray:
    """Decode, convert to `channels`, resize to `size` (h, w) and rescale.

    The result is float32 of shape (h, w, channels) with values in
    [0, pixel_scale], the range of the model's training data.
    """
    # deferred: Pillow loads only to read image files
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
            height, width = size
            if (img.height, img.width) != (height, width):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype="float32")
    except UnidentifiedImageError as exc:
        raise ValueError("not a decodable image (unknown format)") from exc
    except Exception as exc:  # truncated files, bad chunks, decompression bombs, ...
        raise ValueError(f"not a decodable image ({exc.__class__.__name__})") from exc
    if array.ndim == 2:
        array = array[..., np.newaxis]
    return array * (pixel_scale / 255.0)
