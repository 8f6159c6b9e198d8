"""Bundled reference files and `hpe baselines fetch` against a local mirror (no test reaches the internet)."""
import gzip
import hashlib
import http.server
import subprocess
import sys
import threading
from functools import partial

import pytest

from hpe.baselines import THESIS_BASELINES, KitFile, bundled, by_name, fetch, git_blob_id, kit_results, manifest, verify
from hpe.evaluate import collect, load_ground_truth, summaries


def _original(name: str) -> bytes:
    path = bundled(name)
    return gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()


def test_bundled_files_are_the_kits(tmp_path):
    entries = by_name()
    for name in list(THESIS_BASELINES.values()) + ["nyu_test_groundtruth_label.txt", "nyu_test_list.txt"]:
        data = _original(name)
        assert git_blob_id(data) == entries[name].git_blob, name
        assert hashlib.sha256(data).hexdigest() == entries[name].sha256, name
    assert len(manifest()) == 33 and len(kit_results()) == 24  # the kit's leaderboard: 24 NYU methods


def test_verify_by_sha256_or_git_blob():
    data = b"1 2 3\n"
    blob_only = KitFile("evaluation/results/nyu/x.txt", git_blob_id(data), None, None, "X", None)
    assert verify(data, blob_only) is None and "git blob" in verify(b"other", blob_only)
    sha = KitFile("x", "0" * 40, 6, hashlib.sha256(data).hexdigest(), "X", 1.0)
    assert verify(data, sha) is None and "sha256" in verify(b"other", sha)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list = []

    def log_message(self, *args):
        _Quiet.requests.append(self.path)


@pytest.fixture
def mirror(tmp_path):
    """The kit's layout on a local HTTP server: the four thesis baselines (from the bundled originals)."""
    root = tmp_path / "mirror"
    folder = root / "evaluation" / "results" / "nyu"
    folder.mkdir(parents=True)
    for name in THESIS_BASELINES.values():
        (folder / name).write_bytes(_original(name))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Quiet.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def test_fetch_lands_verified_files_and_keeps_them(mirror, tmp_path):
    url, _ = mirror
    dest = tmp_path / "kit"
    report = fetch(dest, url, only=["DeepPrior", "ICCV15_NYU_Feedback.txt"], progress=False)
    assert report == {"CVWW15_NYU_Prior.txt": "ok", "ICCV15_NYU_Feedback.txt": "ok"}
    assert (dest / "CVWW15_NYU_Prior.txt").read_bytes() == _original("CVWW15_NYU_Prior.txt")
    n = len(_Quiet.requests)
    again = fetch(dest, url, only=["DeepPrior", "Feedback"], progress=False)
    assert set(again.values()) == {"present"} and len(_Quiet.requests) == n  # nothing downloaded again
    # The fetched files reproduce the published means (to 0.001 mm).
    gt = load_ground_truth()
    res = summaries(collect([], gt, baselines=dest), gt)
    assert set(res) == {"DeepPrior", "Feedback"} and all(r["agrees_with_published"] for r in res.values())


def test_a_corrupted_or_missing_file_is_named_not_kept(mirror, tmp_path):
    url, folder = mirror
    bad = folder / "IJCAI16_NYU_DeepModel.txt"
    bad.write_bytes(bad.read_bytes().replace(b"1", b"2", 1))
    dest = tmp_path / "kit"
    r = subprocess.run([sys.executable, "-m", "hpe", "baselines", "fetch", "--dest", str(dest), "--mirror", url,
                        "--only", "DeepModel", "DeepPrior-Refine", "V2V-PoseNet", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "IJCAI16_NYU_DeepModel.txt: refused: sha256" in r.stderr
    assert "CVPR18_NYU_V2V_PoseNet.txt: cannot download" in r.stderr and "404" in r.stderr
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == ["CVWW15_NYU_Prior-Refinement.txt"]  # the good one is kept
    r = subprocess.run([sys.executable, "-m", "hpe", "baselines", "fetch", "--dest", str(dest), "--mirror", url,
                        "--only", "nonsense"], capture_output=True, text=True)
    assert r.returncode == 2 and "--only nonsense: not a file or method" in r.stderr


def test_list_shows_the_kits_methods():
    r = subprocess.run([sys.executable, "-m", "hpe", "baselines", "list"], capture_output=True, text=True)
    assert r.returncode == 0 and "V2V-PoseNet" in r.stdout and "15.973" in r.stdout
