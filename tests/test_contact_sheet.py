"""Contact sheets: the right frames, copied pixel for pixel into the PNG, at fixed intervals."""
import numpy as np
import pytest

from lingen_model.io.contact_sheet import sheet_indices, sheet_interval, tile, write_contact_sheet


def test_sheet_indices_fixed_interval():
    assert sheet_interval(33, 8.0) == 0.5 and sheet_interval(481, 8.0) == 2.0
    assert sheet_indices(33, 8.0, 0.5).tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32]
    idx = sheet_indices(481, 8.0, 2.0)
    assert idx.tolist() == list(range(0, 481, 16)) and len(idx) == 31   # 0 s, 2 s, ..., 60 s
    assert sheet_indices(1, 8.0, 2.0).tolist() == [0]
    assert sheet_indices(10, 3.0, 1.0).tolist() == [0, 3, 6, 9]
    with pytest.raises(ValueError):
        sheet_indices(0, 8.0, 1.0)


def test_png_holds_the_frames_pixel_for_pixel(tmp_path):
    import matplotlib.image as mpimg

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (41, 24, 32, 3), dtype=np.uint8)
    path = write_contact_sheet(frames, tmp_path / "s.png", 8.0, every_s=1.0, title="a red circle")
    img = np.rint(mpimg.imread(path)[..., :3] * 255).astype(np.uint8)
    idx = [0, 8, 16, 24, 32, 40]
    ref, corners = tile(frames, np.array(idx), 6, top=16)
    assert img.shape == ref.shape
    for i, (y, x) in zip(idx, corners):
        assert np.array_equal(img[y:y + 24, x:x + 32], frames[i]), i
    assert not list(tmp_path.glob(".*"))  # no temp file left behind
    with pytest.raises(ValueError):
        write_contact_sheet(frames.astype(np.float32), tmp_path / "bad.png", 8.0)
