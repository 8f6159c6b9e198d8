"""Loading a prepared split: chunked, bit-identical whatever the chunk, NaN refused, and bounded in memory."""
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hpe import DataError
from hpe.dataset import SPLITS, load_split

ROOT = Path(__file__).resolve().parents[1]


def tiled_copy(src: Path, dst: Path, frames: int, nan_at: int | None = None) -> None:
    """``src`` with every split's rows repeated up to ``frames`` rows (same datasets, dtypes, attributes)."""
    with h5py.File(src) as a, h5py.File(dst, "w") as b:
        b.attrs.update(dict(a.attrs))
        for split in SPLITS:
            g = b.create_group(split)
            for name, ds in a[split].items():
                data = ds[:]
                rows = np.resize(np.arange(len(data)), frames)
                tiled = data[rows]
                if name == "depth" and split == "train" and nan_at is not None:
                    tiled[nan_at, 3, 3] = np.nan
                g.create_dataset(name, data=tiled, chunks=(min(frames, 64),) + data.shape[1:])


@pytest.mark.parametrize("size", [64, 32])
def test_chunked_load_is_identical_to_one_chunk(synthetic_h5, tmp_path, size):
    path = tmp_path / "tiled.h5"
    tiled_copy(synthetic_h5, path, 100)
    whole = load_split(path, "train", need_rgb=True, input_size=size, chunk=10**6)
    parts = load_split(path, "train", need_rgb=True, input_size=size, chunk=7)
    assert whole.depth.shape == (100, 1, size, size) and whole.depth.dtype == torch.float16
    assert whole.rgb.shape == (100, 3, size, size) and whole.rgb.dtype == torch.uint8
    assert torch.equal(whole.depth, parts.depth) and torch.equal(whole.rgb, parts.rgb)
    assert torch.equal(whole.joints, parts.joints)
    assert load_split(path, "train", need_rgb=False, input_size=size, chunk=7).rgb is None


def test_nan_in_a_later_chunk_is_refused(synthetic_h5, tmp_path):
    path = tmp_path / "nan.h5"
    tiled_copy(synthetic_h5, path, 50, nan_at=45)
    with pytest.raises(DataError, match="split 'train' holds NaN/inf"):
        load_split(path, "train", need_rgb=False, input_size=64, chunk=8)


# The child measures how far its resident set grows while loading: the kernel's high-water mark (VmHWM), reset
# to the current RSS just before (clear_refs 5), so the import's own peak does not hide the loading peak.  A
# fixed mmap threshold makes glibc hand every large buffer back when it is freed (its default threshold adapts
# and keeps freed buffers in the heap), so the mark is what the loader holds, not what malloc happens to keep.
_CHILD = """
import json, sys
import torch
from hpe.dataset import load_split

def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1]) * 1024

path, size, need_rgb, chunk = sys.argv[1], int(sys.argv[2]), sys.argv[3] == '1', int(sys.argv[4])
load_split(path, 'train', need_rgb=need_rgb, input_size=size, limit=16)  # warm up h5py, torch, the kernels
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
before = status('VmRSS')
d = load_split(path, 'train', need_rgb=need_rgb, input_size=size, **({'chunk': chunk} if chunk else {}))
compact = sum(t.numel() * t.element_size() for t in (d.depth, d.rgb, d.joints) if t is not None)
compact += sum(v.nbytes for v in d.meta.values())
print(json.dumps({'growth': status('VmHWM') - before, 'compact': compact}))
"""


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _clear_refs_works(),
                    reason="needs Linux's /proc/self/clear_refs to reset the peak RSS")
# As stored (the default chunk), and resized to half the size: there the arrays shrink 4x but a chunk still
# expands at the stored size, so the chunk is made as small relative to the split as NYU's 256 of 54,568 are.
@pytest.mark.parametrize("size,need_rgb,chunk", [(64, False, 0), (64, True, 0), (32, True, 64)])
def test_loading_peak_stays_within_the_compact_size(synthetic_h5, tmp_path, size, need_rgb, chunk):
    """The loader's memory bound (README "Scale"): peak growth <= 1.3 x the loaded arrays.  A whole-split float32
    copy (what the finiteness check once made) would be 2-5 x."""
    path = tmp_path / "big.h5"
    tiled_copy(synthetic_h5, path, 6000)  # 6000 frames at 64x64: 49 MB of depth, 74 MB of RGB
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(size), "1" if need_rgb else "0",
                          str(chunk)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["compact"] > 20e6
    assert r["growth"] <= 1.3 * r["compact"], r
