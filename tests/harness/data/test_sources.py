"""Data sources: toy names, local files, seeded subsets, bad rows as one-line errors or counted skips."""
import json

import pytest

from harness.config.loader import ConfigError
from harness.config.schema import DataSpec
from harness.data.sources import fingerprint, load_rows


def _jsonl(tmp_path, lines, name="d.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines))
    return str(path)


GOOD = json.dumps({"prompt": "hi", "completion": "hello"})


def test_toy_source_and_seeded_subset_is_stable():
    a, _ = load_rows(DataSpec(source="toy:sft_mix", size=50, seed=3), "sft")
    b, _ = load_rows(DataSpec(source="toy:sft_mix", size=50, seed=3), "sft")
    c, _ = load_rows(DataSpec(source="toy:sft_mix", size=50, seed=4), "sft")
    assert len(a) == 50 and fingerprint(a) == fingerprint(b) != fingerprint(c)


def test_local_subset_and_weights(tmp_path):
    path = _jsonl(tmp_path, [json.dumps({"prompt": f"p{i}", "completion": "c"}) for i in range(10)])
    rows, report = load_rows(DataSpec(source=path, size=4, seed=1), "sft")
    again, _ = load_rows(DataSpec(source=path, size=4, seed=1), "sft")
    assert rows == again and len(rows) == 4 and report.rows_read == 10
    doubled, _ = load_rows(DataSpec(source=path, weight=2.0), "sft")
    assert len(doubled) == 20
    with pytest.raises(ConfigError, match="size 11 is larger than the 10 rows"):
        load_rows(DataSpec(source=path, size=11), "sft")


@pytest.mark.parametrize("line, expected", [
    ('{"prompt": "hi"', ":2: malformed JSON"),
    ('{"prompt": "hi", "answer": "x"}', ":2: completion: required column is missing"),
    ('{"prompt": "", "completion": "x"}', ":2: prompt: expected non-empty text"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', ":2: messages[0]: expected"),
    (b'{"prompt": "\xff\xfe", "completion": "x"}', ":2: not UTF-8"),
    ('{"prompt": "' + "x" * 1_000_001 + '", "completion": "y"}', ":2: prompt: row longer than"),
])
def test_bad_rows_are_one_line_errors(tmp_path, line, expected):
    path = _jsonl(tmp_path, [GOOD, line])
    with pytest.raises(ConfigError) as info:
        load_rows(DataSpec(source=path), "sft")
    assert expected in str(info.value) and str(info.value).startswith(path) and "\n" not in str(info.value)


def test_skip_mode_counts_bad_rows(tmp_path):
    path = _jsonl(tmp_path, [GOOD, '{"prompt": "hi", "answer": "x"}', GOOD])
    rows, report = load_rows(DataSpec(source=path), "sft", on_bad_rows="skip")
    assert len(rows) == 2 and len(report.bad_rows) == 1 and report.as_dict()["bad_rows"] == 1


def test_missing_empty_and_unknown_sources(tmp_path):
    with pytest.raises(ConfigError, match="data file not found"):
        load_rows(DataSpec(source=str(tmp_path / "none.jsonl")), "sft")
    with pytest.raises(ConfigError, match="no usable rows"):
        load_rows(DataSpec(source=_jsonl(tmp_path, [], "e.jsonl")), "sft")
    with pytest.raises(ConfigError, match="unknown toy dataset"):
        load_rows(DataSpec(source="toy:nope"), "sft")


def test_preference_rows_schema(tmp_path):
    path = _jsonl(tmp_path, [json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"})])
    rows, _ = load_rows(DataSpec(source=path, name="mine"), "pref")
    assert rows == [{"prompt": "p", "chosen": "a", "rejected": "b", "source": "mine"}]


def test_hub_style_formats_sharegpt_message_pairs_and_renamed_columns(tmp_path):
    share = _jsonl(tmp_path, [json.dumps({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})], "s.jsonl")
    rows, _ = load_rows(DataSpec(source=share), "sft")
    assert rows[0]["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    pairs = _jsonl(tmp_path, [json.dumps({"question": "q", "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                                          "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]})], "p.jsonl")
    rows, _ = load_rows(DataSpec(source=pairs, columns={"question": "prompt"}), "pref")
    assert (rows[0]["prompt"], rows[0]["chosen"], rows[0]["rejected"]) == ("q", "a", "b")
