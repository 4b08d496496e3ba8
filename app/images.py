"""Uploaded image bytes -> a safe, upright RGB picture, or a clear 4xx.

Checks, in order: not empty; an image format we accept (by content, not by name); a pixel
count under the limit *before* decoding (decompression bombs); a complete file (truncated
data is refused, not half-decoded). Then the first frame of an animation and the EXIF
orientation are applied, and any mode (palette, CMYK, 16-bit, alpha) becomes 8-bit RGB.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ApiError
from models.captioning.images import to_rgb

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}


def decode_upload(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ApiError(422, "the uploaded image is empty", "image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise ApiError(415, "the upload is not an image in a supported format (JPEG, PNG, WebP, GIF, BMP)", "image") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ApiError(413, f"image has too many pixels (limit {max_pixels})", "image") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ApiError(422, f"the image could not be read (truncated or corrupt): {error}", "image") from error
    if image.format not in ACCEPTED_FORMATS:
        raise ApiError(415, f"{image.format} images are not supported (JPEG, PNG, WebP, GIF, BMP)", "image")
    width, height = image.size
    if width * height > max_pixels:
        raise ApiError(413, f"image is {width}×{height} = {width * height} pixels; the limit is {max_pixels}", "image")
    if width < 1 or height < 1:
        raise ApiError(422, "image has no pixels", "image")
    try:
        image.seek(0)  # the first frame of an animation
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ApiError(422, f"the image could not be decoded (truncated or corrupt): {error}", "image") from error
    return to_rgb(image)
