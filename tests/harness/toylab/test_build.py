"""Toy tokenizer and base model: built once, cached by content hash, overridable cache location."""
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.toylab import build


def test_cached_build_is_reused(toy_model_dir):
    assert build.toy_base_model_dir() == toy_model_dir
    assert (toy_model_dir / "DONE").exists() and toy_model_dir.parent.parent == build.cache_root()


def test_tokenizer_keeps_digits_single_and_template_masks(toy_model_dir):
    tok = AutoTokenizer.from_pretrained(toy_model_dir)
    assert [tok.decode([i]) for i in tok("1234", add_special_tokens=False)["input_ids"]] == list("1234")
    chat = [{"role": "user", "content": "add: 1 + 2"}, {"role": "assistant", "content": "3"}]
    enc = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(masked) == "3<|im_end|>"
    prompt = tok.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert enc["input_ids"][:len(prompt)] == prompt  # prompt ids + answer ids == joint tokenization


def test_base_model_size_and_seeded_init(toy_model_dir):
    model = AutoModelForCausalLM.from_pretrained(toy_model_dir)
    params = sum(p.numel() for p in model.parameters())
    assert 0.8e6 < params < 1.5e6
    assert model.config.eos_token_id == AutoTokenizer.from_pretrained(toy_model_dir).eos_token_id


def test_cache_location_is_overridable(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    calls = []
    path = build.build_once("thing", {"a": 1}, lambda out: calls.append(out) or (out / "x").write_text("1"))
    again = build.build_once("thing", {"a": 1}, lambda out: calls.append(out))
    assert path == again and path.parent.parent == tmp_path and len(calls) == 1 and (path / "x").read_text() == "1"


def test_tokenizer_build_is_reproducible_and_keyed_by_the_toylab_code(tmp_path, monkeypatch):
    """Two builds give the same bytes, so a fresh machine trains what a warm cache holds; and the
    cache key covers the toy lab's code, whose generated text the tokenizer is trained on."""
    first, second = tmp_path / "a", tmp_path / "b"
    build._build_tokenizer(first)
    build._build_tokenizer(second)
    assert (first / "tokenizer.json").read_bytes() == (second / "tokenizer.json").read_bytes()
    key = build.spec_hash(build.TOKENIZER_SPEC)
    monkeypatch.setattr(build, "toylab_source_hash", lambda: "other toy lab code")
    assert build.spec_hash(build.TOKENIZER_SPEC) != key
