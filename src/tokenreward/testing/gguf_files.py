"""Tiny GGUF files written on the spot (float32 tensors, llama layout, a byte-level BPE
tokenizer), the way llama.cpp's `convert_hf_to_gguf.py` writes a Llama checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def llama_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's interleaving of the rotary halves of a q / k projection (transformers undoes it)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def llama_tensors(model) -> dict[str, np.ndarray]:
    """GGUF tensor name -> float32 array for a `LlamaForCausalLM`."""
    cfg = model.config
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    tensors = {
        "token_embd.weight": state["model.embed_tokens.weight"],
        "output_norm.weight": state["model.norm.weight"],
    }
    if not cfg.tie_word_embeddings:
        tensors["output.weight"] = state["lm_head.weight"]
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for layer in range(cfg.num_hidden_layers):
        for hf, ours in names.items():
            weights = state[f"model.layers.{layer}.{hf}.weight"]
            if ours == "attn_q":
                weights = llama_permute(weights, cfg.num_attention_heads)
            elif ours == "attn_k":
                weights = llama_permute(weights, cfg.num_key_value_heads)
            tensors[f"blk.{layer}.{ours}.weight"] = weights
    return tensors


def add_bpe_tokenizer(writer, tokenizer) -> None:
    """A byte-level BPE `PreTrainedTokenizerFast` as GGUF `tokenizer.ggml.*` fields (model `gpt2`)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = tokenizer.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    special = set(tokenizer.all_special_tokens)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in special else 1 for token in tokens])  # 3 CONTROL, 1 NORMAL
    writer.add_token_merges(merges)
    for name, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("unk_token_id", writer.add_unk_token_id),
        ("pad_token_id", writer.add_pad_token_id),
    ):
        if getattr(tokenizer, name) is not None:
            add(getattr(tokenizer, name))
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def write_tiny_gguf(path: str | Path, model, tokenizer, architecture: str = "llama") -> Path:
    """Write a float32 GGUF of a tiny `LlamaForCausalLM` and its tokenizer to `path`;
    `architecture` sets `general.architecture` (another name gives a file transformers refuses)."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    add_bpe_tokenizer(writer, tokenizer)
    for name, weights in llama_tensors(model).items():
        writer.add_tensor(name, np.ascontiguousarray(weights, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
