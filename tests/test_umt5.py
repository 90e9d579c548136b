"""UMT5 backend (Wan's text encoder): the class follows config.json's model_type, 512 zero-padded
slots, and embeddings equal to transformers' UMT5EncoderModel on a tiny random checkpoint."""
import pytest
import torch

from lingen_model.models.text_encoder import T5Encoder, UMT5Encoder, WAN_NEGATIVE_PROMPT, build_text_encoder, clear_text_encoder_cache
from test_text_encoder import _tiny_tokenizer

PROMPTS = ["a red circle moving to the left", "blue   square on gray background", ""]


@pytest.fixture()
def umt5_dirs(tmp_path):
    from transformers import UMT5Config, UMT5EncoderModel
    from transformers.utils import logging as hf_logging

    torch.manual_seed(0)
    cfg = UMT5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=3, num_heads=4, dropout_rate=0.0,
                     relative_attention_num_buckets=8)
    model = UMT5EncoderModel(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # distinct per-layer position biases (UMT5's difference from T5)
        for name, p in model.named_parameters():
            if "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g))
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(tmp_path / "text_encoder")
        _tiny_tokenizer().save_pretrained(tmp_path / "tokenizer")
    finally:
        hf_logging.enable_progress_bar()
    return tmp_path / "text_encoder", tmp_path / "tokenizer"


def _reference(enc_dir, tok_dir, prompts, length):
    from transformers import AutoTokenizer, UMT5EncoderModel

    model = UMT5EncoderModel.from_pretrained(enc_dir, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    batch = tok([" ".join(p.split()) for p in prompts], padding="max_length", max_length=length, truncation=True,
                return_tensors="pt")
    with torch.no_grad():
        h = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].bool()
    return h * mask[..., None], mask


def test_umt5_backend_equals_umt5_encoder_model(umt5_dirs):
    enc_dir, tok_dir = umt5_dirs
    enc = UMT5Encoder(enc_dir, tok_dir)
    tokens, mask = enc.encode(PROMPTS)
    want, want_mask = _reference(enc_dir, tok_dir, PROMPTS, 512)
    assert tokens.shape == (3, 512, 16) and torch.equal(mask, want_mask)
    assert (tokens - want).abs().max() <= 1e-6
    assert not tokens[~mask].any()  # pad slots are zero
    assert type(enc.model).__name__ == "UMT5EncoderModel"
    assert enc.spec() == {"backend": "umt5", "max_length": 512, "path": str(enc_dir), "tokenizer_path": str(tok_dir)}


def test_t5_backend_follows_model_type_not_t5_class(umt5_dirs):
    """The old bug: T5EncoderModel loads a UMT5 checkpoint silently and gives other outputs."""
    from transformers import AutoTokenizer, T5EncoderModel

    enc_dir, tok_dir = umt5_dirs
    want, mask = _reference(enc_dir, tok_dir, PROMPTS[:2], 10)
    wrong = T5EncoderModel.from_pretrained(enc_dir, use_safetensors=True).eval()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    batch = tok([" ".join(p.split()) for p in PROMPTS[:2]], padding="max_length", max_length=10, return_tensors="pt")
    with torch.no_grad():
        bad = wrong(**batch).last_hidden_state * mask[..., None]
    rel = ((bad - want).norm() / want.norm()).item()
    print(f"T5EncoderModel on a UMT5 checkpoint: relative error {rel:.2f}")
    assert rel > 0.05
    t5 = T5Encoder(enc_dir, tok_dir, max_length=10)
    got, got_mask = t5.encode([" ".join(p.split()) for p in PROMPTS[:2]])
    n = got.shape[1]
    assert (got - want[:, :n]).abs().max() <= 1e-6 and torch.equal(got_mask, mask[:, :n])


def test_umt5_spec_factory_and_negative_prompt(umt5_dirs, tmp_path):
    enc_dir, tok_dir = umt5_dirs
    clear_text_encoder_cache()
    enc = build_text_encoder({"backend": "umt5", "path": str(enc_dir), "tokenizer_path": str(tok_dir), "dim": 16})
    assert isinstance(enc, UMT5Encoder) and enc.max_length == 512
    tokens, mask = enc.encode([WAN_NEGATIVE_PROMPT])
    assert tokens.shape == (1, 512, 16) and mask.sum() >= 1
    assert WAN_NEGATIVE_PROMPT.startswith("色调艳丽") and WAN_NEGATIVE_PROMPT.endswith("倒着走")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="model_type"):
        UMT5Encoder(tmp_path / "bad", tok_dir)
    clear_text_encoder_cache()
