"""The fused model on the two real shipped experts: identity at initialisation, causality of
the character alignment, the cached pass equal to the teacher-forced one, save and load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from coe_gateway.fusion.align import chunks_of, encode_pair, encode_peer, visibility
from coe_gateway.fusion.config import MotConfig
from coe_gateway.fusion.experts import FrozenExpert, boundaries
from coe_gateway.fusion.model import MixtureOfThoughts, collate, frozen_logprobs
from coe_gateway.fusion.scoring import pick, score_item
from coe_gateway.fusion.store import WEIGHTS, load, save
from coe_gateway.fusion.tasks import McItem

from .conftest import STATIC, perturbed

CTX = "Question: Which technology was developed most recently?\nAnswer:"
ITEM = McItem("t1", CTX, ("cellular telephone", "television", "refrigerator", "airplane"), 0)


def test_boundaries_cut_uniform_stacks_and_end_at_the_last_layer() -> None:
    assert boundaries(30, 3) == [10, 20, 30]
    assert boundaries(18, 3) == [6, 12, 18]
    assert boundaries(30, 4) == [8, 15, 22, 30]
    with pytest.raises(ValueError):
        boundaries(18, 19)


def test_chunks_cover_the_text_once_in_order() -> None:
    assert chunks_of("abcdef", [0, 2, 2, 5, 6]) == ["", "ab", "", "cde", "f"]


def test_visibility_lets_a_row_see_only_its_past() -> None:
    allowed = visibility(3, [[-1, 0, 2, 2, 3]])
    assert allowed.tolist() == [
        [True, False, False, True, True, False, False, False],
        [True, True, False, True, True, False, False, False],
        [True, True, True, True, True, True, True, False],
    ]


@pytest.mark.parametrize("primary", [0, 1])
def test_peer_reads_the_same_text_chunked_by_the_primary(experts: list[FrozenExpert],
                                                        primary: int) -> None:
    prim, peer = experts[primary], experts[1 - primary]
    text = encode_pair(prim.tokenizer, CTX + " Ünïcode 😀", " cellular telephone")
    assert "".join(text.chunks()) == text.text
    pt = encode_peer(peer.tokenizer, peer.bos_id, text.chunks())
    assert peer.tokenizer.decode(pt.ids, skip_special_tokens=True) == text.text
    assert pt.owners == sorted(pt.owners) and max(pt.owners) < len(text.ids)


@pytest.mark.parametrize("primary", [0, 1])
def test_untrained_fused_model_is_exactly_its_frozen_primary(experts: list[FrozenExpert],
                                                             primary: int) -> None:
    model = MixtureOfThoughts(experts, MotConfig(encoder=STATIC), 256).eval()
    pairs = [(CTX, " " + c) for c in ITEM.choices]
    batch = collate(experts, primary, [1 - primary], pairs)
    with torch.no_grad():
        fused = model(batch).sum(1)
    assert torch.equal(fused, frozen_logprobs(experts[primary], pairs))


@pytest.mark.parametrize(("primary", "a", "b"), [
    # SmolLM2 splits " absorb|ent", Gemma keeps " absorbent" whole: read naturally, Gemma's
    # token boundary at " absorb" would tell the primary whether the word goes on
    (0, " absorbent material", " absorb water"),
    (1, " counterclockwise spin", " counter top"),   # Gemma: " counter|clockwise"
])
def test_no_token_sees_text_that_comes_after_it(experts: list[FrozenExpert], primary: int,
                                                a: str, b: str) -> None:
    """Two texts that share a prefix: every shared primary position gets the same
    log-probabilities from the fused model, whatever follows, also where the peer's own
    tokenization of the two tails would split the shared prefix differently (this fails when
    the peer reads the whole text in its own tokenization)."""
    model = perturbed(experts)
    batch = collate(experts, primary, [1 - primary], [(CTX, a), (CTX, b)])
    batch.targets = torch.where(batch.mask.bool(), 5, -100)  # log p(token 5) everywhere
    with torch.no_grad():
        logp = model(batch)                                              # (2, N)
    tok = experts[primary].tokenizer
    ta, tb = (encode_pair(tok, CTX, x).ids for x in (a, b))
    shared = next(i for i, (x, y) in enumerate(zip(ta, tb)) if x != y)
    # positions 0..shared-1 have read the same tokens: their distributions must agree
    assert shared > len(encode_pair(tok, CTX).ids)
    assert torch.allclose(logp[0, :shared], logp[1, :shared], atol=1e-5)
    frozen = MixtureOfThoughts(experts, MotConfig(encoder=STATIC), 256).eval()
    with torch.no_grad():
        alone = frozen(batch)
    assert not torch.allclose(logp[0, :shared], alone[0, :shared], atol=1e-3)  # fused differs


@pytest.mark.parametrize("primary", [0, 1])
def test_cached_scoring_equals_the_teacher_forced_pass(experts: list[FrozenExpert],
                                                       primary: int) -> None:
    model = perturbed(experts)
    scored = score_item(model, ITEM, primary)
    batch = collate(experts, primary, [1 - primary], [(CTX, x) for x in ITEM.continuations])
    with torch.no_grad():
        ref = model(batch).sum(1)
    assert torch.allclose(torch.tensor(scored.logprob), ref, atol=1e-4)
    alone = score_item(model, ITEM, primary, fuse=False)
    base = frozen_logprobs(experts[primary], [(CTX, x) for x in ITEM.continuations])
    assert torch.allclose(torch.tensor(alone.logprob), base, atol=1e-4)


def test_control_ignores_the_peer(experts: list[FrozenExpert]) -> None:
    """Without cross-attention the peer's text cannot matter: a model whose peer reads
    nonsense scores the same."""
    model = perturbed(experts, cross_attention=False)
    batch = collate(experts, 0, [1], [(CTX, " television")])
    with torch.no_grad():
        before = model(batch)
        batch.peer_ids[0] = torch.zeros_like(batch.peer_ids[0])
        after = model(batch)
    assert torch.equal(before, after)


def test_pick_never_breaks_ties_by_position() -> None:
    assert pick([-1.0, -0.5, -2.0]) == 1
    assert pick([-0.5, -0.5, -2.0]) == -1


def test_save_and_load_round_trip_small_files(experts: list[FrozenExpert],
                                               tmp_path: Path, models_dir: Path) -> None:
    model = perturbed(experts)
    save(model, tmp_path, {"note": "test"})
    assert (tmp_path / WEIGHTS).stat().st_size < 8_000_000
    again = load(tmp_path, models_dir, experts=experts)
    a = score_item(model, ITEM, 1).logprob
    b = score_item(again, ITEM, 1).logprob
    assert a == pytest.approx(b, abs=2e-3)  # float16 on disk


def test_untrained_generation_is_the_frozen_primarys_greedy_answer(
        experts: list[FrozenExpert]) -> None:
    from coe_gateway.fusion.generate import Generation, Sampling

    model = MixtureOfThoughts(experts, MotConfig(encoder=STATIC), 256).eval()
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    gen = Generation(model, msgs, Sampling(max_tokens=8, temperature=0), msgs[0]["content"])
    text = "".join(gen)
    tok = experts[0].tokenizer
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)
    ref = experts[0].model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert gen.primary == 0 and gen.active == [0, 1]
    assert text == tok.decode(ref[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert gen.prompt_tokens == enc["input_ids"].shape[1] and gen.peer_tokens > 0


@pytest.mark.parametrize("primary", [0, 1])
def test_cached_decoding_follows_the_teacher_forced_model(experts: list[FrozenExpert],
                                                          primary: int) -> None:
    """Greedy decoding of a fused model (caches, peers fed token by token) picks at every
    step the argmax of the teacher-forced pass over the prompt and the generated text."""
    from coe_gateway.fusion.generate import Generation, Sampling

    model = perturbed(experts)
    with torch.no_grad():
        model.router.net[2].bias[primary] = 1.0
    msgs = [{"role": "user", "content": "Name a planet of the solar system."}]
    gen = Generation(model, msgs, Sampling(max_tokens=6, temperature=0), msgs[0]["content"])
    out = "".join(gen)
    assert gen.primary == primary and out
    prim = experts[primary].tokenizer
    prompt = gen._prompt()
    if experts[primary].bos_id is not None:  # Gemma's template writes the BOS it adds
        prompt = prompt.removeprefix(prim.bos_token)
    batch = collate(experts, primary, [1 - primary], [(prompt, out)])
    scored = (batch.targets[0] >= 0).nonzero().flatten()
    assert len(scored) == gen.completion_tokens - (gen.finish_reason == "stop")
    with torch.no_grad():
        logp = experts[primary].logits(model.hidden(batch)[0, scored]).log_softmax(-1)
    chosen = logp.gather(1, batch.targets[0, scored].unsqueeze(1)).squeeze(1)    # (T,)
    assert torch.allclose(chosen, logp.max(-1).values, atol=1e-4)  # argmax, up to ties
