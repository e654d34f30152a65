"""Label scoring answers exactly as greedy generation does: every tiny sample, the fallbacks, the branch mask."""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from pytest_emogate.data import Test3Data, load_test3, prompt_sentence  # noqa: E402
from pytest_emogate.inference.batches import SampleInputs  # noqa: E402
from pytest_emogate.inference.generate import Generation, batch_embeddings, generate  # noqa: E402
from pytest_emogate.inference.run import run_inference  # noqa: E402
from pytest_emogate.inference.score import branch_logits, greedy_chain, label_chains, score  # noqa: E402
from pytest_emogate.inference.settings import MER2023_LABELS  # noqa: E402
from pytest_emogate.model import EmotionLlama, PromptIds, answer_text, load_emotion_llama, tokenize_prompts  # noqa: E402
from pytest_emogate.model.emotion_llama import ModelFiles  # noqa: E402
from tests.conftest import TINY, TINY_SETTINGS  # noqa: E402

EOS = 2


@pytest.fixture(scope="module")
def data() -> Test3Data:
    """The committed tiny Test3 set (834 samples)."""
    return load_test3(TINY / "data")


@pytest.fixture(scope="module")
def loaded() -> tuple[EmotionLlama, object]:
    """The tiny model and its tokenizer, loaded once."""
    files = ModelFiles(TINY_SETTINGS.ckpt, TINY_SETTINGS.llama, TINY_SETTINGS.vit)
    return load_emotion_llama(files, torch.device("cpu"))


@pytest.fixture(scope="module")
def prompts(loaded: tuple[EmotionLlama, object], data: Test3Data) -> list[PromptIds]:
    """Every sample's prompt ids."""
    return tokenize_prompts(loaded[1], [prompt_sentence(sample) for sample in data.samples])


@pytest.fixture(scope="module")
def generated(loaded: tuple[EmotionLlama, object], prompts: list[PromptIds], data: Test3Data) -> list[Generation]:
    """Greedy generation (the default path's) for all 834 samples: what scoring must reproduce."""
    return generate(loaded[0], prompts, SampleInputs(data.samples, 448), batch_size=16, max_new_tokens=32)


@pytest.mark.slow
def test_label_chains_are_the_tokens_generation_produces(loaded: tuple[EmotionLlama, object]) -> None:
    tokenizer = loaded[1]
    chains = label_chains(tokenizer, MER2023_LABELS)
    assert [answer_text(tokenizer, [*chain, EOS]) for chain in chains] == list(MER2023_LABELS)


@pytest.mark.slow
def test_score_mode_answers_equal_generation_for_every_sample(
    loaded: tuple[EmotionLlama, object], prompts: list[PromptIds], data: Test3Data, generated: list[Generation]
) -> None:
    model, tokenizer = loaded
    chains = label_chains(tokenizer, MER2023_LABELS)
    scored, fallbacks = score(model, prompts, SampleInputs(data.samples, 448), 16, 32, chains)
    assert scored == generated
    assert fallbacks == 0  # the tiny model always answers "label</s>"


@pytest.mark.slow
def test_samples_whose_answer_is_not_a_scored_label_fall_back_to_generation(
    loaded: tuple[EmotionLlama, object], prompts: list[PromptIds], data: Test3Data, generated: list[Generation]
) -> None:
    model, tokenizer = loaded
    few = range(96)
    reported: list[int] = []
    scored, fallbacks = score(
        model, [prompts[i] for i in few], SampleInputs(data.samples[:96], 448), 16, 32,
        label_chains(tokenizer, ("sad", "happy")), lambda rows, gens: reported.extend(rows),
    )  # fmt: skip
    assert scored == generated[:96]
    answers = [answer_text(tokenizer, list(generated[i].ids)) for i in few]
    assert fallbacks == sum(answer not in ("sad", "happy") for answer in answers) > 16
    assert sorted(reported) == list(few)  # scored and fallback samples each handed over exactly once


@pytest.mark.slow
def test_a_cap_too_short_for_label_and_eos_falls_back_and_is_capped(
    loaded: tuple[EmotionLlama, object], prompts: list[PromptIds], data: Test3Data
) -> None:
    model, tokenizer = loaded
    load = SampleInputs(data.samples[:20], 448)
    scored, fallbacks = score(model, prompts[:20], load, 8, 1, label_chains(tokenizer, MER2023_LABELS))
    assert scored == generate(model, prompts[:20], load, batch_size=8, max_new_tokens=1)
    assert fallbacks == 20 and all(g.hit_cap and len(g.ids) == 1 for g in scored)


@pytest.mark.slow
def test_each_branch_sees_the_prompt_and_its_own_tokens_as_generation_would(
    loaded: tuple[EmotionLlama, object], prompts: list[PromptIds], data: Test3Data
) -> None:
    """Tree logits vs the same tokens fed one by one after the prompt with a KV cache, one sample at a time."""
    from transformers import DynamicCache

    model = loaded[0]
    rows = [0, 5, 700]  # prompts of different lengths: left padding inside the batch
    chains = [(40,), (101, 7, 333), (12, 90)]
    images, features = SampleInputs([data.samples[i] for i in rows], 448)(range(3))
    with torch.inference_mode():
        embeds = batch_embeddings(model, [prompts[i] for i in rows], images, features)
        tree = branch_logits(model, embeds, chains)
        for row, embed in enumerate(embeds):
            expected = []
            for chain in chains:
                cache, length = DynamicCache(), embed.shape[0]
                after_prompt = model.logits(embed[None], torch.ones(1, length, dtype=torch.long),
                                            torch.arange(length)[None], cache)[0, -1]  # fmt: skip
                for step, token in enumerate(chain):
                    mask = torch.ones(1, length + step + 1, dtype=torch.long)
                    ids = torch.tensor([[token]])
                    expected.append(model.logits(model.embed(ids), mask, torch.tensor([[length + step]]), cache)[0, -1])
            torch.testing.assert_close(tree[row, 0], after_prompt, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(tree[row, 1:], torch.stack(expected), rtol=1e-4, atol=1e-4)
            assert tree[row].argmax(-1).tolist() == [
                int(after_prompt.argmax()),
                *torch.stack(expected).argmax(-1).tolist(),
            ]


@pytest.mark.parametrize(
    ("top", "finite", "found"),
    [
        ([7, EOS, 9, 9], [True] * 4, (7,)),  # "label</s>"
        ([8, 1, 9, EOS], [True] * 4, (8, 9)),  # a two-token label
        ([8, 1, 5, EOS], [True] * 4, None),  # the second label's second token is not the top one
        ([8, 1, 9, 4], [True] * 4, None),  # the label goes on instead of ending
        ([7, 3, 9, 9], [True] * 4, None),  # "label" then something other than EOS
        ([5, EOS, 9, EOS], [True] * 4, None),  # the top token starts no label
        ([7, EOS, 9, 9], [True, False, True, True], None),  # non-finite logits after the label
        ([7, EOS, 9, 9], [False, True, True, True], None),  # non-finite logits after the prompt
    ],
)
def test_a_label_is_taken_only_when_greedy_would_produce_it_and_stop(
    top: list[int], finite: list[bool], found: tuple[int, ...] | None
) -> None:
    # Chains (7,) and (8, 9): appended tokens 7 | 8 9 -> top after the prompt, after 7, after 8, after 9.
    assert greedy_chain(top, finite, [(7,), (8, 9)]) == found


@pytest.mark.slow
def test_run_inference_in_score_mode_says_how_many_fell_back(data: Test3Data) -> None:
    settings = dataclasses.replace(TINY_SETTINGS, mode="score", labels=("sad", "angry", "neutral"))
    run = run_inference(settings, data, progress=False, indices=range(48))
    generated = run_inference(TINY_SETTINGS, data, progress=False, indices=range(48))
    assert run.predictions == generated.predictions
    other = sum(p.output not in settings.labels for p in generated.predictions)
    assert other > 0
    assert run.notes == [
        f"score mode: {48 - other}/48 answers from one forward pass, {other} fell back to greedy generation"
    ]
