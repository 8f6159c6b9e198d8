"""A sweep of bad command lines and faults over every command, as a careless user would type them.

Each case runs the real command line (in-process, ``hpe.cli.main``) and must end as expected: the exit status,
one error line ``hpe CMD: error: ...`` naming what is wrong (argparse's usage errors: its usage, then one such
line), never a traceback, and no temporary file, lock or empty output folder left behind.  The cases are
``tests/data/sweep_cases.tsv``; what each printed is recorded in ``tests/data/sweep_outcomes.txt``:
``HPE_SWEEP_RECORD=tests/data/sweep_outcomes.txt pytest tests/test_sweep.py`` rewrites it.
"""
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[1]
REF = REPO / "hpe" / "reference" / "nyu"
FUSEPRED = str(REPO / "experiments" / "fig4.7" / "fusepred.toml")



def _cases(path: Path) -> list[tuple[str, str, int, str]]:
    """(id, argv with {placeholders}, exit status, what stderr must contain), one a line of ``path``."""
    cases = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, template, status, message = (line.split("\t") + [""])[:4]
            cases.append((name, template, int(status), message))
    return cases


CASES = _cases(REPO / "tests" / "data" / "sweep_cases.tsv")


@pytest.fixture(scope="module")
def places(tiny_runs, synthetic_h5, synthetic_root, other_h5):
    return {"run": tiny_runs / "done", "rgbrun": tiny_runs / "rgb", "centre": tiny_runs / "centre",
            "nl": tiny_runs / "not_learned", "div": tiny_runs / "diverged", "unf": tiny_runs / "unfinished",
            "h5": synthetic_h5, "other": other_h5, "root": synthetic_root, "fusepred": FUSEPRED,
            "sample": REF / "sample" / "depth_1_0000001.png", "rgbsample": REF / "sample" / "rgb_1_0000001.png",
            "fb": REF / "ICCV15_NYU_Feedback.txt.gz"}


@pytest.fixture(scope="module")
def careless_files(tmp_path_factory) -> Path:
    """The careless user's files, made once (formatting 8,252-row prediction files took 1.6 s a case) and copied
    into each case's own folder."""
    folder = tmp_path_factory.mktemp("careless")
    _files(folder)
    return folder


def _files(tmp: Path) -> None:
    """The careless user's files: a plain file where a folder is expected, bad prediction files, a wall."""
    from PIL import Image

    from hpe.nyu import read_joints_txt, write_joints_txt
    (tmp / "afile").write_text("not a folder")
    (tmp / "preds").mkdir()  # what `hpe predict --out` left: not a run folder
    (tmp / "preds" / "predictions.json").write_text("{}")
    (tmp / "preds" / ".hpe-outputs.json").write_text('{"command": "predict", "files": ["predictions.json"]}')
    (tmp / "search").mkdir()  # what `hpe search --out` left (before manifests: its study and table)
    (tmp / "search" / "trials.csv").write_text("number,state\n")
    p = read_joints_txt(REF / "ICCV15_NYU_Feedback.txt.gz")
    lines = [" ".join(f"{v:.4f}" for v in row.ravel()) for row in p]
    (tmp / "preds.csv").write_text("\n".join(x.replace(" ", ",") for x in lines) + "\n")
    (tmp / "nan.txt").write_text("\n".join(lines[:7] + ["nan " + lines[7].split(" ", 1)[1]] + lines[8:]) + "\n")
    write_joints_txt(tmp / "zero.txt", np.where(np.arange(len(p))[:, None, None] == 3, p * [1, 1, 0], p))
    write_joints_txt(tmp / "shifted.txt", np.concatenate([p[1:], p[-1:]]))
    write_joints_txt(tmp / "shuffled.txt", p[np.random.default_rng(1).permutation(len(p))])
    write_joints_txt(tmp / "swapped.txt", p[:, [0, 1, 2, 3, 5, 4] + list(range(6, 14))])
    write_joints_txt(tmp / "pasted.txt", np.concatenate([p[:100], p[200:300], p[200:]]))  # 100-199 lost
    write_joints_txt(tmp / "constant.txt", np.where(np.arange(len(p))[:, None, None] % 2 == 0, p[:1], p))
    write_joints_txt(tmp / "uvswapped.txt", p[..., [1, 0, 2]])  # written row, column instead of column, row
    (tmp / "data.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(504))  # the signature is what is checked
    (tmp / "notes.txt").write_text("the user's notes\n")
    (tmp / "nyu" / "test").mkdir(parents=True)  # a real NYU root (no hpe sidecar)
    (tmp / "nyu" / "test" / "joint_data.mat").write_bytes(b"MATLAB 5.0")
    Image.fromarray(np.full((480, 640), 800, np.uint16)).save(tmp / "wall.png")
    pen = np.zeros((480, 640), np.uint16)
    pen[100:352, 320] = 700  # 1 px wide: far less than a pixel of a 64 px crop of a 300 mm cube
    Image.fromarray(pen).save(tmp / "pen.png")
    noise = np.random.default_rng(0).integers(0, 65535, (480, 640)).astype(np.uint16)
    Image.fromarray(noise).save(tmp / "noise.png")
    np.save(tmp / "cube.npy", np.zeros((4, 4, 4)))


def _leftovers(*folders: Path) -> list[str]:
    found = []
    for folder in folders:
        for p in Path(folder).rglob("*"):
            if ".tmp-" in p.name or p.name.endswith(".lock") or ".old-" in p.name or p.name == ".lock":
                found.append(str(p))
    return found


def _generic(text: str, places: dict, tmp: Path) -> str:
    """Paths replaced by their placeholders, so that the record does not depend on where the test ran."""
    for key, value in sorted(places.items(), key=lambda kv: -len(str(kv[1]))):
        text = text.replace(str(value), "{" + key + "}")
    text = text.replace(str(tmp), "{tmp}").replace(str(REPO) + "/", "")
    return re.sub(r"pid \d+", "pid N", text)


_RECORD: list[str] = []


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_sweep(case, places, careless_files, tmp_path, hpe_cli):
    name, template, status, message = case
    shutil.copytree(careless_files, tmp_path, dirs_exist_ok=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    argv = template.format(tmp=tmp_path, **places).split()
    code, out, err = hpe_cli(*argv)
    assert "Traceback" not in err and "Traceback" not in out, err
    assert code == status, (argv, code, err[-2000:])
    message = message.format(tmp=tmp_path, **places)
    assert message in err, (message, err)
    lines = [line for line in err.strip().splitlines() if line]
    if status == 2:
        error_lines = [line for line in lines if line.startswith("hpe ") and ": error: " in line]
        assert len(error_lines) == 1 and lines[-1] == error_lines[0], err  # usage lines may precede it
        if not err.startswith("usage:"):
            assert len(lines) == 1, err
        assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing new: no file, no empty --out
    assert not _leftovers(tmp_path, *(Path(str(places[k])).parent for k in ("run", "h5", "root")))
    outcome = lines[-1] if lines else (out.strip().splitlines() or [""])[0]
    _RECORD.append(f"{name}\thpe {_generic(template, places, tmp_path)}\texit {code}\t"
                   f"{_generic(outcome, {k: str(v) for k, v in places.items()}, tmp_path)}")


def test_sweep_record(tmp_path):
    """Writes the record when asked (HPE_SWEEP_RECORD=path), and checks that there are at least 60 bad cases."""
    assert sum(status != 0 for _, _, status, _ in CASES) >= 60
    target = os.environ.get("HPE_SWEEP_RECORD")
    if target and _RECORD:
        Path(target).write_text("# case\tcommand\texit status\twhat it printed (last line of stderr, or stdout)\n"
                                + "\n".join(_RECORD) + "\n")
