"""The learned ranker's trees compiled to native code, for serving.

LightGBM scores a request's few hundred candidate rows tree by tree through a generic
interpreter; the same trees written out as C (treelite reads the boosters and joins
their trees into one model, tl2cgen writes and builds the code with the host's C
compiler) score them in about a third of the time, to the same values. Training
compiles them beside the saved boosters when it can (`compile_trees`): a host without a
C compiler, or any failure, leaves the boosters alone, and the reason is kept in the
ranker's metadata.

Serving uses the compiled library only when it was built on a host like this one (same
system, machine and tl2cgen version) and gives the boosters' scores on probe rows kept
from training (`load_compiled`); otherwise LightGBM scores, as without it. A tl2cgen
predictor may be called by one thread at a time: each thread gets its own.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

LIB_FILE = "ranker-trees.so"
COMPILED_FILE = "ranker-trees.json"
PROBE_FILE = "ranker-probe.npy"
PROBE_ROWS = 64
TOOLCHAINS = ("gcc", "clang")
MAX_PROBE_DIFFERENCE = 1e-9


def host_key() -> str:
    """What a compiled library must have been built on to be loaded here."""
    import tl2cgen

    return f"{platform.system()}-{platform.machine()}-tl2cgen-{tl2cgen.__version__}"


def compile_trees(boosters: Sequence[lgb.Booster], directory: Path,
                  probe: npt.NDArray[np.float32]) -> str | None:
    """Write the boosters' trees as one native library into `directory` (their sum; the
    scores are divided by their number), with the probe rows `load_compiled` checks it
    on. None when done, else why not (nothing is left behind then)."""
    toolchain = next((t for t in TOOLCHAINS if shutil.which(t)), None)
    if toolchain is None:
        return f"no C compiler ({' or '.join(TOOLCHAINS)}) on this host"
    try:
        import tl2cgen
        import treelite

        models = [treelite.frontend.from_lightgbm(b) for b in boosters]
        model = models[0] if len(models) == 1 else treelite.Model.concatenate(models)
        with tempfile.TemporaryDirectory(prefix=".compile-", dir=directory) as scratch:
            built = Path(scratch) / LIB_FILE
            # `quantize` compares feature bins as integers, the same decisions as the
            # float thresholds (the probe check holds it to the boosters' scores): 394
            # rows through 200 trees in 0.85 ms against 1.27 ms on session 40's machine.
            tl2cgen.export_lib(model, toolchain=toolchain, libpath=str(built),
                               params={"parallel_comp": 2, "quantize": 1}, nthread=2)
            np.save(Path(scratch) / PROBE_FILE, np.asarray(probe, dtype=np.float32))
            shutil.move(built, directory / LIB_FILE)
            shutil.move(Path(scratch) / PROBE_FILE, directory / PROBE_FILE)
        (directory / COMPILED_FILE).write_text(json.dumps(
            {"host": host_key(), "toolchain": toolchain, "library": LIB_FILE,
             "boosters": len(boosters)}, indent=2))
    except Exception as exc:  # the boosters still serve: say why, leave nothing half-made
        for name in (LIB_FILE, PROBE_FILE, COMPILED_FILE):
            (directory / name).unlink(missing_ok=True)
        return f"{type(exc).__name__}: {exc}"
    return None


class CompiledTrees:
    """A compiled library's scores, one tl2cgen predictor per calling thread."""

    def __init__(self, library: Path, boosters: int = 1) -> None:
        self.library = library
        self.boosters = boosters  # the library sums their scores; `score` averages
        self._local = threading.local()

    def score(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        import tl2cgen

        predictor = getattr(self._local, "predictor", None)
        if predictor is None:
            predictor = self._local.predictor = tl2cgen.Predictor(str(self.library),
                                                                  nthread=1)
        rows = np.ascontiguousarray(features, dtype=np.float32)
        # LambdaRank has no output transform: the margin is LightGBM's prediction.
        out = predictor.predict(tl2cgen.DMatrix(rows), pred_margin=True)
        summed = np.asarray(out, dtype=np.float64).reshape(-1)
        return summed / self.boosters if self.boosters > 1 else summed


def load_compiled(directory: Path,
                  predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]
                  ) -> tuple[CompiledTrees | None, str | None]:
    """The compiled trees saved in `directory`, when built on a host like this one and
    giving `predict`'s scores (the boosters', by LightGBM) on the probe rows; else None
    and why (None when there is nothing compiled)."""
    if not (directory / COMPILED_FILE).exists():
        return None, None
    try:
        info = json.loads((directory / COMPILED_FILE).read_text())
        if info.get("host") != host_key():
            return None, f"compiled on {info.get('host')!r}, this host is {host_key()!r}"
        trees = CompiledTrees(directory / str(info.get("library", LIB_FILE)),
                              int(info.get("boosters", 1)))
        probe = np.load(directory / PROBE_FILE, allow_pickle=False)
        if len(probe):
            expected = np.asarray(predict(probe), dtype=np.float64)
            difference = float(np.abs(trees.score(probe) - expected).max())
            if not difference <= MAX_PROBE_DIFFERENCE:
                return None, (f"the compiled trees differ from the boosters by {difference:.3g} "
                              "on the probe rows")
    except Exception as exc:  # a missing, foreign or broken library: LightGBM serves
        return None, f"{type(exc).__name__}: {exc}"
    return trees, None
