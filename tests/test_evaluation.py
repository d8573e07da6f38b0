"""`evaluate_policy` on the small world against an independent per-prompt computation."""

from __future__ import annotations

import pytest
import torch

from tokenreward.evaluation import evaluate_policy


def test_greedy_evaluation_matches_per_prompt_hugging_face_decoding(small_world):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenreward.world.oracle import grade

    policy = AutoModelForCausalLM.from_pretrained(str(small_world.policy_dir)).eval()
    reference = AutoModelForCausalLM.from_pretrained(str(small_world.policy_dir)).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.01 * torch.randn_like(p))
    tokenizer = AutoTokenizer.from_pretrained(str(small_world.tokenizer_dir))
    result = evaluate_policy(
        policy, small_world, split="test", reference=reference, n=4, greedy=True, max_new_tokens=24
    )

    records = small_world.prompts("test")[:4]
    scores, defects, lengths, kls = [], [], [], []
    with torch.no_grad():
        for record in records:
            prompt = tokenizer(record["prompt"], return_tensors="pt")
            out = policy.generate(**prompt, max_new_tokens=24, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                                  pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            response = out[0, prompt["input_ids"].shape[1] :].tolist()
            if tokenizer.eos_token_id in response:
                response = response[: response.index(tokenizer.eos_token_id) + 1]
            g = grade(record, tokenizer.decode(response, skip_special_tokens=True))
            scores.append(g.score)
            defects.append(g.defects > 0)
            lengths.append(len(response))
            full = torch.tensor([prompt["input_ids"][0].tolist() + response])
            n = full.shape[1] - len(response)
            kl = 0.0
            for model, sign in ((policy, 1.0), (reference, -1.0)):
                logp = model(full).logits[0, n - 1 : -1].log_softmax(-1)
                kl += sign * logp.gather(1, full[0, n:, None]).sum().item()
            kls.append(kl)
    assert result["n"] == 4 and len(result["samples"]) == 4
    assert result["oracle_score"] == pytest.approx(sum(scores) / 4, abs=1e-6)
    assert result["defect_rate"] == pytest.approx(sum(defects) / 4)
    assert result["length"] == pytest.approx(sum(lengths) / 4)
    assert result["kl"] == pytest.approx(sum(kls) / 4, abs=1e-3)
    assert [s["oracle_score"] for s in result["samples"]] == pytest.approx(scores, abs=1e-6)


def test_sampled_evaluation_is_seeded(small_world):
    first = evaluate_policy(small_world.policy_dir, small_world, n=4, greedy=False, seed=1, max_new_tokens=16)
    again = evaluate_policy(small_world.policy_dir, small_world, n=4, greedy=False, seed=1, max_new_tokens=16)
    other = evaluate_policy(small_world.policy_dir, small_world, n=4, greedy=False, seed=2, max_new_tokens=16)
    assert [s["response"] for s in first["samples"]] == [s["response"] for s in again["samples"]]
    assert [s["response"] for s in first["samples"]] != [s["response"] for s in other["samples"]]
    assert first["kl"] is None
    with pytest.raises(ValueError, match="n must be at least 1"):
        evaluate_policy(small_world.policy_dir, small_world, n=0)
