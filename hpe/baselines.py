"""The NYU field's published results: the files bundled with hpe, and the evaluation kit's, fetched and verified.

Bundled (``hpe/reference/nyu``, see SOURCES.md there): the test ground truth, the test list, the four
baselines of the thesis and Tompson's ``test_predictions.mat`` (gzipped), the real test frame 1, and
``KIT_MANIFEST.tsv``: every NYU file of github.com/xinghaochen/awesome-hand-pose-estimation at one pinned
commit, with its git blob id, size, sha256, method name and published mean error.  :func:`fetch` downloads
the kit's result files from that commit (or a mirror), verifies each and moves it into place atomically.
"""
from __future__ import annotations

import csv
import hashlib
import http.client
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tqdm import tqdm

from hpe import DataError
from hpe.atomic import WriteError, atomic_path
from hpe.output import own_folder

log = logging.getLogger("hpe.baselines")
KIT_REPO = "xinghaochen/awesome-hand-pose-estimation"
KIT_COMMIT = "e297a6ea7fd557bd5701c97a3437c551c4b4fbce"
DEFAULT_MIRROR = f"https://raw.githubusercontent.com/{KIT_REPO}/{KIT_COMMIT}"
RESULTS = "evaluation/results/nyu/"
# The thesis's baselines of figure 4.9 (it shows DeepPrior with refinement, hpe also draws it without).
THESIS_BASELINES = {"DeepPrior": "CVWW15_NYU_Prior.txt", "DeepPrior-Refine": "CVWW15_NYU_Prior-Refinement.txt",
                    "Feedback": "ICCV15_NYU_Feedback.txt", "DeepModel": "IJCAI16_NYU_DeepModel.txt"}
TOMPSON = "Tompson et al."


def bundled(name: str) -> Path:
    """Path of a bundled reference file, e.g. ``nyu_test_groundtruth_label.txt`` (its ``.gz`` when compressed)."""
    root = resources.files("hpe").joinpath("reference", "nyu")
    for candidate in (name, name + ".gz"):
        p = Path(str(root.joinpath(candidate)))
        if p.is_file():
            return p
    raise DataError(f"bundled reference file {name} is missing from the hpe installation ({root}); reinstall hpe")


def ground_truth_file() -> Path:
    return bundled("nyu_test_groundtruth_label.txt")


@dataclass(frozen=True)
class KitFile:
    path: str                  # in the kit's repository
    git_blob: str
    size: int | None
    sha256: str | None
    method: str | None
    published_mm: float | None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def manifest() -> list[KitFile]:
    """The pinned kit's NYU files (``KIT_MANIFEST.tsv``)."""
    rows = []
    with open(bundled("KIT_MANIFEST.tsv"), newline="") as fh:
        for r in csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t"):
            rows.append(KitFile(r["path"], r["git_blob"], int(r["bytes"]) if r["bytes"] else None,
                                r["sha256"] or None, r["method"] or None,
                                float(r["published_mean_mm"]) if r["published_mean_mm"] else None))
    return rows


def kit_results(include_all: bool = False) -> list[KitFile]:
    """The kit's NYU result files: those of its leaderboard (a method and a published mean), or all of them."""
    return [f for f in manifest() if f.path.startswith(RESULTS) and (include_all or f.method)]


def by_name() -> dict[str, KitFile]:
    return {f.name: f for f in manifest()}


def git_blob_id(data: bytes) -> str:
    """What ``git hash-object`` prints for a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def verify(data: bytes, entry: KitFile) -> str | None:
    """None if ``data`` is the manifest's file, else what is wrong."""
    if entry.sha256:
        got = hashlib.sha256(data).hexdigest()
        return None if got == entry.sha256 else f"sha256 {got[:12]}... is not the manifest's {entry.sha256[:12]}..."
    got = git_blob_id(data)
    return None if got == entry.git_blob else f"git blob {got[:12]}... is not the manifest's {entry.git_blob[:12]}..."


def _select(only: list[str] | None, include_all: bool) -> list[KitFile]:
    files = kit_results(include_all or bool(only))
    if not only:
        return files
    wanted = {w.lower() for w in only}
    chosen = [f for f in files if f.name.lower() in wanted or (f.method or "").lower() in wanted]
    unknown = wanted - {f.name.lower() for f in chosen} - {(f.method or "").lower() for f in chosen}
    if unknown:
        raise ValueError(f"--only {', '.join(sorted(unknown))}: not a file or method of the kit's NYU results "
                         f"(e.g. {', '.join(f.method for f in kit_results()[:4])})")
    return chosen


def fetch(dest: Path, mirror: str | None = None, only: list[str] | None = None, include_all: bool = False,
          progress: bool = True, timeout: float = 60.0) -> dict[str, str]:
    """Download the kit's NYU result files into ``dest``: ``BASE/evaluation/results/nyu/NAME`` for each, verified
    (sha256, or the git blob id where no sha256 is known) before it is moved into place.  Files already there and
    verified are kept.  A download cut short (truncated body, reset connection) or a disk that fills up is named for
    its file and nothing partial is kept; a full disk stops the rest.  Returns {file: "ok" | "present" | what went
    wrong}."""
    files = _select(only, include_all)
    if mirror is not None and "://" not in mirror:  # urllib would fail once per file with "unknown url type"
        raise ValueError(f"--mirror {mirror}: give a URL (for a local copy of the kit: file://{Path(mirror).resolve()})")
    with own_folder(Path(dest)):
        return _fetch(Path(dest), (mirror or DEFAULT_MIRROR).rstrip("/"), files, progress, timeout)


def _fetch(dest: Path, base: str, files: list[KitFile], progress: bool, timeout: float) -> dict[str, str]:
    report: dict[str, str] = {}
    bar = tqdm(files, desc="fetch", unit="file", disable=None if progress else True, dynamic_ncols=True)
    for entry in bar:
        bar.set_postfix_str(entry.name)
        target = dest / entry.name
        if target.is_file() and verify(target.read_bytes(), entry) is None:
            report[entry.name] = "present"
            continue
        url = f"{base}/{entry.path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                data = r.read()
        except urllib.error.HTTPError as exc:
            report[entry.name] = f"cannot download {url}: HTTP {exc.code} {exc.reason}"
            continue
        except http.client.IncompleteRead as exc:
            report[entry.name] = f"cannot download {url}: the connection closed after {len(exc.partial)} bytes " \
                                 f"(truncated); nothing was kept, run again"
            continue
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            report[entry.name] = f"cannot download {url}: {getattr(exc, 'reason', None) or exc or type(exc).__name__}"
            continue
        problem = verify(data, entry)
        if problem:
            report[entry.name] = f"refused: {problem} (from {url})"
            continue
        try:
            with atomic_path(target) as tmp:
                tmp.write_bytes(data)
        except WriteError as exc:  # the disk is full: the rest would fail alike
            report[entry.name] = str(exc)
            for rest in files[files.index(entry) + 1:]:
                report.setdefault(rest.name, "not fetched: the disk filled up")
            break
        report[entry.name] = "ok"
    return report


def methods_in(folder: Path) -> list[tuple[str, Path, KitFile]]:
    """The kit's leaderboard files found in ``folder``: (method, path, manifest entry), in manifest order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"baselines folder {folder} does not exist (fetch it with `hpe baselines fetch --dest "
                        f"{folder}`)")
    found = []
    for entry in kit_results():
        for candidate in (folder / entry.name, folder / (entry.name + ".gz")):
            if candidate.is_file():
                found.append((entry.method, candidate, entry))
                break
    if not found:
        raise DataError(f"{folder} holds none of the kit's NYU result files (e.g. {kit_results()[0].name}); "
                        f"fetch them with `hpe baselines fetch --dest {folder}`")
    return found
