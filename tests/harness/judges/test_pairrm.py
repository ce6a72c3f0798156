"""`pairrm`: a clear config error without llm-blender, and the grouping of a prompt's samples."""
from __future__ import annotations

import importlib.util

import pytest

from harness.config.loader import ConfigError
from harness.judges import get_judge
from harness.judges.pairrm import prompt_runs


def test_prompt_runs_group_consecutive_samples_of_a_prompt():
    assert prompt_runs(["a", "a", "a", "b", "c", "c", "a"]) == [(0, 3), (3, 4), (4, 6), (6, 7)]
    assert prompt_runs([]) == []


@pytest.mark.skipif(importlib.util.find_spec("llm_blender") is not None, reason="llm-blender is installed here")
def test_pairrm_without_llm_blender_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="needs the llm-blender package") as err:
        get_judge("pairrm", progress=False)
    assert "\n" not in str(err.value)
