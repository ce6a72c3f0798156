"""Config loading: one-line errors naming file, line and key; key=value overrides."""
import pytest

from harness.config.loader import ConfigError, load_config
from harness.config.schema import SFTConfig


def _write(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def _error(path, overrides=()):
    with pytest.raises(ConfigError) as info:
        load_config(SFTConfig, path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_valid_config_with_overrides(tmp_path):
    path = _write(tmp_path, "data:\n  - source: toy:sft_mix\npacking: none\n")
    cfg = load_config(SFTConfig, path, ["lr=1e-4", "data.0.size=100", "loss_mask=all"])
    assert cfg.lr == 1e-4 and cfg.data[0].size == 100 and cfg.loss_mask == "all" and cfg.packing == "none"
    assert (cfg.batch_size, cfg.epochs, cfg.max_length) == (32, 3.0, 2048)  # LION defaults


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = _write(tmp_path, "data: toy:sft_mix\npacking: none\npackign_typo: 3\n")
    assert _error(path) == f"{path}:3: packign_typo: unknown key"


def test_nested_type_error_points_at_the_line(tmp_path):
    path = _write(tmp_path, "data:\n  - source: toy:sft_mix\n    size: many\n")
    message = _error(path)
    assert message.startswith(f"{path}:3: data[0].size:")


def test_bad_enum_value(tmp_path):
    path = _write(tmp_path, "data: toy:sft_mix\npacking: sideways\n")
    assert _error(path).startswith(f"{path}:2: packing: Input should be 'none', 'concat' or 'isolated'")


def test_impossible_values_rejected(tmp_path):
    path = _write(tmp_path, "data: toy:sft_mix\nlr: -1\n")
    assert f"{path}:2: lr:" in _error(path)
    path = _write(tmp_path, "data: toy:sft_mix\nbatch_size: 10\nmicro_batch_size: 4\n")
    assert "not a multiple" in _error(path)


def test_yaml_syntax_error_has_line(tmp_path):
    path = _write(tmp_path, "data: toy:sft_mix\npacking: [none\nlr: 1\n")
    assert _error(path).startswith(f"{path}:")
    assert "YAML syntax error" in _error(path)


def test_bad_override_is_blamed_on_the_command_line(tmp_path):
    path = _write(tmp_path, "data: toy:sft_mix\n")
    assert _error(path, ["lr=abc"]).startswith("<command line>: lr:")
    assert "key=value" in _error(path, ["lr"])


def test_missing_and_empty_files(tmp_path):
    assert _error(tmp_path / "nope.yaml").endswith("file not found")
    assert _error(_write(tmp_path, "")).endswith("empty YAML file")


def test_yaml_is_loaded_safely(tmp_path):
    path = _write(tmp_path, "data: !!python/object/apply:os.system ['echo pwned']\n")
    assert "YAML syntax error" in _error(path)
