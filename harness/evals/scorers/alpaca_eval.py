"""AlpacaEval 2 scorer: the leaderboard figures of one annotations file, by alpaca_eval's own code.

An annotations file is alpaca_eval's: one row per instruction with `preference` in [1, 2]
(1: the baseline `output_1` wins, 2: the model `output_2` wins, 1.5 or a legacy 0: a draw).
Win rate, standard error, counts and the discrete win rate come from `alpaca_eval.metrics.get_winrate`;
the length-controlled (LC) win rate from `alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate`
(GLM `length_controlled_v1`). What this module adds is only what alpaca_eval lacks offline:
- it serves alpaca_eval's hub file `df_gamed.csv` from a local path (see `_local_df_gamed`);
- it looks each instruction's difficulty up by instruction text, not by row position (alpaca_eval
  uses the row position, which is wrong for files that are reordered or hold a subset);
- judge failures (missing / unparseable preference) are counted and left out, never made losses.
  As in alpaca_eval, the LC win rate still averages its prediction over every instruction of the
  file, failed ones included: that prediction uses the instruction's difficulty only.
Figures are in percent, like the leaderboard.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.evals.scorers import plain, read_records, shared_data_dir

LEADERBOARD_KEYS = ("win_rate", "standard_error", "n_wins", "n_wins_base", "n_draws", "n_total",
                    "discrete_win_rate", "length_controlled_winrate", "lc_standard_error")
LC_KEYS = ("length_controlled_winrate", "lc_standard_error")
LC_FILE_NAMES = ("df_gamed.csv", "df_gamed_reconstructed.csv")  # hub name first, then the shared stand-in
N_INSTRUCTIONS = 805  # the AlpacaEval set; alpaca_eval's df_gamed.csv indexes it 0..804


class LCUnavailable(Exception):
    """Why the length-controlled win rate cannot be computed for this input."""


def default_lc_data_path() -> Path:
    env = os.environ.get("HARNESS_ALPACA_LC_DATA")
    return Path(env) if env else shared_data_dir() / "alpaca_eval" / "lc" / "df_gamed_reconstructed.csv"


def default_eval_set_path() -> Path:
    """The 805 instructions in alpaca_eval's order (the baseline's outputs file)."""
    return shared_data_dir() / "alpaca_eval" / "results" / "gpt4_1106_preview" / "model_outputs.json"


def resolve_lc_file(lc_data_path: str | Path | None = None) -> Path:
    """The df_gamed CSV: the path itself, or inside a directory `df_gamed.csv` / `df_gamed_reconstructed.csv`."""
    path = Path(lc_data_path) if lc_data_path is not None else default_lc_data_path()
    if path.is_dir():
        for name in LC_FILE_NAMES:
            if (path / name).is_file():
                return path / name
        raise LCUnavailable(f"no {' or '.join(LC_FILE_NAMES)} in {path}")
    if not path.is_file():
        raise LCUnavailable(f"LC data file {path} not found (set HARNESS_ALPACA_LC_DATA or pass lc_data_path)")
    return path


def score_annotations(annotations: list[dict] | pd.DataFrame, lc_data_path: str | Path | None = None,
                      eval_set_path: str | Path | None = None) -> dict[str, Any]:
    """Leaderboard figures of one model's annotations against one baseline.

    Returns LEADERBOARD_KEYS plus `n_failures` (rows without a valid preference, left out) and
    `lc_note` (None, or why the LC keys are None).
    """
    frame = pd.DataFrame(annotations).reset_index(drop=True)
    if "preference" not in frame:
        frame["preference"] = np.nan
    preference = _valid_preferences(frame["preference"])
    result = _head_to_head(preference.dropna())
    result["n_failures"] = int(preference.isna().sum())
    try:
        result.update(_length_controlled(frame.assign(preference=preference), lc_data_path, eval_set_path))
        result["lc_note"] = None
    except LCUnavailable as why:
        result.update({key: None for key in LC_KEYS}, lc_note=str(why))
    ordered = LEADERBOARD_KEYS + ("n_failures", "lc_note")
    return {key: plain(result[key]) for key in ordered}


def _valid_preferences(raw: pd.Series) -> pd.Series:
    """Preferences as floats; anything that is not a number in [1, 2] (or the legacy draw 0) becomes NaN."""
    numbers = pd.to_numeric(raw, errors="coerce").astype(float)
    valid = numbers.between(1, 2) | (numbers == 0)
    return numbers.where(valid)


def _head_to_head(preference: pd.Series) -> dict[str, Any]:
    if preference.empty:
        return {"win_rate": None, "standard_error": None, "n_wins": 0, "n_wins_base": 0, "n_draws": 0,
                "n_total": 0, "discrete_win_rate": None}
    return dict(_alpaca_metrics().get_winrate(pd.DataFrame({"preference": preference.to_numpy()})))


def _length_controlled(frame: pd.DataFrame, lc_data_path, eval_set_path) -> dict[str, float]:
    lc_file = resolve_lc_file(lc_data_path)
    for column in ("output_1", "output_2"):
        if column not in frame or not frame[column].map(lambda text: isinstance(text, str)).all():
            raise LCUnavailable(f"LC needs the text of `{column}` in every row")
    if frame["preference"].isna().all():
        raise LCUnavailable("no row has a valid preference")
    frame = frame.copy()
    frame["generator_1"] = frame.get("generator_1", "baseline")
    frame["generator_2"] = frame.get("generator_2", "model")
    if frame["generator_1"].nunique() != 1 or frame["generator_2"].nunique() != 1:
        raise LCUnavailable("LC needs one baseline (generator_1) and one model (generator_2) per file")
    frame = frame.drop(columns=["index"], errors="ignore")
    # alpaca_eval reads each row's instruction number from the frame's index (`reset_index`).
    frame.index = pd.Index(_instruction_positions(frame, eval_set_path))

    import sklearn

    glm_winrate = _alpaca_metrics().glm_winrate

    with _local_df_gamed(glm_winrate, lc_file), sklearn.config_context(), warnings.catch_warnings():
        # sklearn >= 1.8 warns that the `penalty` path alpaca_eval uses will change in 1.10.
        warnings.simplefilter("ignore", FutureWarning)
        metrics = glm_winrate.get_length_controlled_winrate(
            frame, save_weights_dir=None, is_add_glm_preference_inplace=False)
    return {key: metrics[key] for key in LC_KEYS}


def _instruction_positions(frame: pd.DataFrame, eval_set_path) -> np.ndarray:
    """Each row's position in the 805-instruction AlpacaEval order, found by instruction text."""
    path = Path(eval_set_path) if eval_set_path is not None else default_eval_set_path()
    if "instruction" in frame and path.is_file():
        order = {row["instruction"]: i for i, row in enumerate(read_records(path))}
        positions = frame["instruction"].map(order)
        if positions.isna().any():
            raise LCUnavailable(f"{int(positions.isna().sum())} instructions are not in the AlpacaEval set {path}")
        return positions.astype(int).to_numpy()
    if len(frame) == N_INSTRUCTIONS:  # alpaca_eval's own assumption: rows in the eval-set order
        return np.arange(N_INSTRUCTIONS)
    raise LCUnavailable(f"cannot place {len(frame)} rows in the AlpacaEval order: no instruction text or no "
                        f"eval set at {path}")


@contextmanager
def _local_df_gamed(glm_module, lc_file: Path):
    """alpaca_eval fetches `df_gamed.csv` with `hf_hub_download` each time it fits the LC GLM.

    For the length of one call, the module's `hf_hub_download` name answers that one file from the
    local copy; any other file is refused (nothing is fetched at run time).
    """
    def local_download(*, repo_id: str, filename: str, **_ignored) -> str:
        if filename != "df_gamed.csv":
            raise FileNotFoundError(f"offline: no local copy of {repo_id}/{filename}")
        return str(lc_file)

    original = glm_module.hf_hub_download
    glm_module.hf_hub_download = local_download
    try:
        yield
    finally:
        glm_module.hf_hub_download = original


def _alpaca_metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # alpaca_eval imports the deprecated pkg_resources
        from alpaca_eval import metrics
    return metrics


def format_result(result: dict[str, Any]) -> str:
    """The leaderboard keys, one per line (LC keys say why when they are missing)."""
    lines = []
    for key in LEADERBOARD_KEYS + ("n_failures",):
        value = result.get(key)
        lines.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    if result.get("lc_note"):
        lines.append(f"lc_note: {result['lc_note']}")
    return "\n".join(lines)
