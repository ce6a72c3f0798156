"""Judge and generation configs: secrets never come from YAML."""
from __future__ import annotations

import pytest

from harness.config.eval import GenerationConfig, JudgeConfig
from harness.config.loader import ConfigError, load_config
from harness.judges import judge_config


def test_an_api_key_in_yaml_is_an_error_at_its_line_without_echoing_it(tmp_path):
    path = tmp_path / "judge.yaml"
    path.write_text("type: openai\nmodel: gpt-4o\napi_key: sk-live-abcdef\n")
    with pytest.raises(ConfigError) as err:
        load_config(JudgeConfig, path)
    assert f"{path}:3: api_key:" in str(err.value) and "environment variable" in str(err.value)
    assert "sk-live-abcdef" not in str(err.value)


def test_judge_spec_is_a_name_or_a_yaml_file(tmp_path):
    assert judge_config("verifier").type == "verifier"
    path = tmp_path / "j.yaml"
    path.write_text("type: openai\nmodel: my-judge\nbase_url: http://127.0.0.1:9/v1\napi_key_env: null\n")
    cfg = judge_config(str(path))
    assert cfg.label == "my-judge" and cfg.api_key_env is None
    path.write_text("type: oracle\n")
    with pytest.raises(ConfigError, match=r"j.yaml: type: unknown judge type 'oracle'"):
        judge_config(str(path))
    with pytest.raises(ConfigError, match="neither a judge name"):
        judge_config("no-such-judge")


def test_defaults_name_the_official_judge_and_cache_keys_skip_batch_size():
    assert JudgeConfig().label == "gpt-4-1106-preview" and JudgeConfig(type="verifier").label == "verifier"
    assert GenerationConfig(batch_size=4).cache_key_fields() == GenerationConfig(batch_size=64).cache_key_fields()
    assert GenerationConfig(max_new_tokens=8).cache_key_fields() != GenerationConfig().cache_key_fields()
