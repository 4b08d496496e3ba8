"""The upload decoder on the awkward kinds of real images."""
import io

import numpy as np
import pytest
from PIL import Image

from app.errors import ApiError
from app.images import decode_upload

LIMIT = 40_000_000


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 30), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 30))  # a blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = decode_upload(save(image, "JPEG", exif=exif.tobytes(), quality=95), LIMIT)
    assert decoded.size == (30, 60)
    top = np.asarray(decoded)[:8].mean(axis=(0, 1))
    assert top[2] > 150 and top[0] < 100  # the blue band is now on top


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    decoded = decode_upload(save(cmyk, "JPEG"), LIMIT)
    assert decoded.mode == "RGB" and decoded.getpixel((10, 10))[0] > 200


def test_sixteen_bit_png_becomes_rgb():
    array = (np.linspace(0, 65535, 400).reshape(20, 20)).astype(np.uint16)
    image = Image.fromarray(array)
    assert image.mode.startswith("I")
    decoded = decode_upload(save(image, "PNG"), LIMIT)
    assert decoded.mode == "RGB"
    values = np.asarray(decoded)[..., 0]
    assert values.min() < 20 and values.max() > 230  # the range is scaled, not clipped


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    decoded = decode_upload(buffer.getvalue(), LIMIT)
    assert decoded.getpixel((8, 8))[0] > 200 and decoded.getpixel((8, 8))[1] < 50


def test_transparency_becomes_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert decode_upload(save(image, "PNG"), LIMIT).getpixel((5, 5)) == (255, 255, 255)


def test_pixel_limit_applies_before_decoding():
    with pytest.raises(ApiError) as error:
        decode_upload(save(Image.new("RGB", (300, 300)), "PNG"), 300 * 299)
    assert error.value.status == 413
