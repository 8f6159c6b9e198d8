import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from scipy.io import loadmat

from hpe import DataError
from hpe.nyu import BACKGROUND_MM, NYUSplit, read_depth
from hpe.synthetic import SUBJECT2_SCALE, generate

PIXELS = Path(__file__).parent / "data" / "synthetic_pixels.sha256.json"


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str((a.dtype.str, a.shape)).encode() + a.tobytes()).hexdigest()


def test_same_pixels_and_joints_as_the_published_generator(tmp_path):
    """Every synthetic number in the README rests on these exact frames: the decoded pixels and joint arrays of
    a few frames of two seeds (both test subjects) must equal those the generator of commit 0edfcca wrote (its
    PNG bytes may differ).  Regenerate the fixture only for a deliberate change of the data, and say so."""
    got = {}
    for seed in (0, 1):
        root = tmp_path / f"s{seed}"
        generate(root, 4, 3, seed=seed, workers=1)
        for p in sorted(root.glob("*/*.png")):
            got[f"{seed}/{p.parent.name}/{p.name}"] = _digest(imagecodecs.png_decode(p.read_bytes()))
        for split in ("train", "test"):
            mat = loadmat(root / split / "joint_data.mat")
            for key in ("joint_uvd", "joint_xyz"):
                got[f"{seed}/{split}/{key}"] = _digest(mat[key])
    want = json.loads(PIXELS.read_text())
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []


@pytest.mark.parametrize("shape", [(480, 640, 3), (1, 1, 3), (7, 5, 3)])
def test_png_writer_decodes_to_the_same_pixels(shape):
    """Our PNG container (zlib-ng's deflate inside) read back by Pillow (what hpe reads with) and by libpng, which
    both check every chunk's CRC; any byte flipped inside the image data is refused."""
    import io

    from PIL import Image

    from hpe.synthetic import png_bytes
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    image[0] = 255  # the Up filter's wrap-around (0 - 255 mod 256) on the second row
    data = png_bytes(image)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), image)
    assert np.array_equal(imagecodecs.png_decode(data), image)
    broken = bytearray(data)
    broken[len(data) // 2] ^= 0xFF
    with pytest.raises(Exception):
        imagecodecs.png_decode(bytes(broken))
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(image[..., 0])


def test_layout_subjects_and_determinism(synthetic_root, tmp_path):
    info = json.loads((synthetic_root / "hpe_synthetic.json").read_text())
    assert info["test_subject1_frames"] == 5  # NYU's 2440/8252 proportion of 16 frames
    again = tmp_path / "again"
    generate(again, 40, 16, seed=3, workers=1)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # written as a whole, then renamed
    for name in ("train/depth_1_0000005.png", "test/rgb_1_0000016.png"):
        assert (again / name).read_bytes() == (synthetic_root / name).read_bytes()
    test = NYUSplit(synthetic_root, "test")
    xyz = test.joints.xyz
    # The palm (joints 30-35) is rigid: every frame's palm distances are its subject's scale times frame 1's, and
    # the second subject's (frames 6-16) are 0.87 of the first's.
    palm = np.linalg.norm(xyz[:, 30:36, None] - xyz[:, None, 30:36], axis=-1)
    scale = np.where(np.arange(16) < 5, 1.0, SUBJECT2_SCALE)
    np.testing.assert_allclose(palm, scale[:, None, None] * palm[0], atol=1e-3)
    # Fingertip to palm point spans a hand's size and changes with the sampled pose.
    span = np.linalg.norm(xyz[:, 0] - xyz[:, 35], axis=-1)
    assert 30 < span.min() and span.max() < 200 and span.std() > 5


def test_depth_like_structured_light(synthetic_root):
    s = NYUSplit(synthetic_root, "train")
    d = read_depth(s.depth_path(1))
    assert (d == BACKGROUND_MM).mean() > 0.2
    assert (d == 0).sum() > 20  # holes along silhouettes
    u, v, z = s.joints.uvd[0, 32]
    patch = d[int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4]
    assert ((patch > 0) & (patch < 1500)).any() and abs(np.median(patch[patch < 1500]) - z) < 40


def test_never_writes_into_an_existing_dataset(tmp_path):
    real = tmp_path / "nyu"
    (real / "train").mkdir(parents=True)
    (real / "train" / "joint_data.mat").write_bytes(b"precious")
    for force in (False, True):
        with pytest.raises(DataError, match="not empty|not a dataset hpe generated"):
            generate(real, 4, 2, workers=1, force=force)
    assert (real / "train" / "joint_data.mat").read_bytes() == b"precious"
    ours = tmp_path / "ours"
    generate(ours, 4, 2, seed=1, workers=1)
    with pytest.raises(DataError, match="pass --force to replace this synthetic one"):
        generate(ours, 4, 2, workers=1)
    generate(ours, 5, 2, seed=2, workers=1, force=True)
    assert json.loads((ours / "hpe_synthetic.json").read_text())["train_frames"] == 5
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name or ".tmp-" in p.name]


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """SIGTERM mid-way: the temporary dataset folder and the worker pool go, one line, no traceback."""
    p = subprocess.Popen([sys.executable, "-m", "hpe", "synth", str(tmp_path / "nyu"), "--train", "400", "--test", "50",
                          "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob(".nyu.tmp-*/train/*.png")) and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143 and err.strip() == "hpe synth: terminated; nothing half-written was kept"
    assert list(tmp_path.iterdir()) == []
