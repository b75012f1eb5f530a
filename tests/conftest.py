"""Shared fixtures: tiny models built from configs (no network), one thread for stable timings."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def tiny_gpt2(n_layer: int = 3, vocab: int = 101, seed: int = 0, n_positions: int = 128):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=n_layer, n_embd=64, n_head=4, vocab_size=vocab, n_positions=n_positions, bos_token_id=0, eos_token_id=0
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_task_gpt2(n_layer: int = 2, seed: int = 0):
    """A random tiny GPT-2 over rltr's built-in vocabulary, long enough for the built-in tasks."""
    from rltr.tasks.vocab import VOCAB_SIZE

    return tiny_gpt2(n_layer=n_layer, vocab=VOCAB_SIZE, seed=seed, n_positions=256)


def tiny_llama(n_layer: int = 3, vocab: int = 101, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        num_hidden_layers=n_layer, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=vocab, max_position_embeddings=128, bos_token_id=0, eos_token_id=0,
    )
    return LlamaForCausalLM(cfg).eval()


FAMILIES = {"gpt2": tiny_gpt2, "llama": tiny_llama}


@pytest.fixture(params=sorted(FAMILIES))
def family_model(request):
    """(family name, tiny random HF model) for every supported family."""
    return request.param, FAMILIES[request.param]()
