import io

import numpy as np
import pytest
from PIL import Image

from embeddings.ml.preprocess import choose_input_spec, effective_mode, load_image_array, load_images


def _png(image: Image.Image, fmt: str = "PNG", **kw) -> io.BytesIO:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    buf.seek(0)
    return buf


def test_choose_input_spec_gray_and_color():
    assert choose_input_spec([(28, 28)] * 5, ["L"] * 5) == (28, 1)
    assert choose_input_spec([(28, 28), (30, 30)], ["L", "RGB"])[1] == 3
    assert choose_input_spec([(28, 28)], ["1"])[1] == 1


def test_choose_input_spec_size_is_capped_and_rounded():
    size, _ = choose_input_spec([(640, 480)] * 3, ["RGB"] * 3, max_size=64)
    assert size == 64
    size, _ = choose_input_spec([(30, 10), (31, 31), (50, 50)], ["L"] * 3)
    assert size % 4 == 0 and size == 32
    size, _ = choose_input_spec([(4, 4)], ["L"])
    assert size == 16


def test_effective_mode_sees_gray_rgb():
    gray = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8)[:, None, None] * 8, (1, 32, 3)), "RGB")
    assert effective_mode(gray) == "L"
    color = Image.new("RGB", (32, 32), (200, 10, 10))
    assert effective_mode(color) == "RGB"
    modes = [effective_mode(gray), effective_mode(gray)]
    assert choose_input_spec([(32, 32)] * 2, modes)[1] == 1


def test_load_gray_and_rgb_shapes_and_range():
    img = Image.fromarray(np.full((40, 40), 255, np.uint8), "L")
    arr = load_image_array(_png(img), 16, 1)
    assert arr.shape == (1, 16, 16) and arr.dtype == np.float32
    assert np.allclose(arr, 1.0)
    rgb = load_image_array(_png(Image.new("RGB", (40, 40), (255, 0, 0))), 16, 3)
    assert rgb.shape == (3, 16, 16)
    assert np.allclose(rgb[0], 1.0) and np.allclose(rgb[1:], 0.0)
    # color image read as one channel becomes its luminance
    gray = load_image_array(_png(Image.new("RGB", (40, 40), (255, 0, 0))), 16, 1)
    assert 0.2 < gray.mean() < 0.4


def test_gif_first_frame_is_used():
    frames = [Image.new("L", (20, 20), 0), Image.new("L", (20, 20), 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    buf.seek(0)
    assert Image.open(buf).n_frames == 2
    buf.seek(0)
    arr = load_image_array(buf, 8, 1)
    assert arr.max() < 0.05


def test_aspect_kept_with_letterbox():
    # a wide image: dark background with a white square in the middle
    arr = np.zeros((20, 80), np.uint8)
    arr[5:15, 35:45] = 255
    out = load_image_array(_png(Image.fromarray(arr, "L")), 32, 1)[0]
    # 80x20 -> 32x8: the content occupies 8 rows in the middle; the padding
    # takes the border color (black), and the square stays square
    assert out.shape == (32, 32)
    assert np.allclose(out[:10], 0.0) and np.allclose(out[-10:], 0.0)
    bright = np.argwhere(out > 0.5)
    height = bright[:, 0].max() - bright[:, 0].min() + 1
    width = bright[:, 1].max() - bright[:, 1].min() + 1
    assert abs(int(height) - int(width)) <= 1


def test_letterbox_padding_matches_light_background():
    arr = np.full((10, 40), 255, np.uint8)
    arr[4:6, 10:30] = 0
    out = load_image_array(_png(Image.fromarray(arr, "L")), 16, 1)[0]
    assert out[0].min() > 0.95 and out[-1].min() > 0.95


def test_jpeg_and_transparent_png():
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8), "RGB")
    arr = load_image_array(_png(photo, "JPEG"), 24, 3)
    assert arr.shape == (3, 24, 24) and 0 <= arr.min() and arr.max() <= 1
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert np.allclose(load_image_array(_png(clear), 8, 1), 1.0)  # transparent -> white


def test_load_images_stacks_and_reports_progress():
    sources = [_png(Image.new("L", (12, 9), v)) for v in (0, 128, 255)]
    calls = []
    out = load_images(sources, 8, 1, on_progress=lambda d, t, m: calls.append((d, t)), progress_every=2)
    assert out.shape == (3, 1, 8, 8)
    assert calls == [(2, 3), (3, 3)]
    assert out[0].max() == 0 and out[2].min() == 1


def test_bad_channels_rejected():
    with pytest.raises(ValueError):
        load_image_array(_png(Image.new("L", (4, 4))), 8, 2)
