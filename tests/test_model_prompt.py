"""The prompt, its tokens and its embedding layout against the spec (§5.2-5.4), and the answer decoding (§6.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from pytest_emogate.inference.generate import prompt_embeddings  # noqa: E402
from pytest_emogate.model.llm import load_tokenizer  # noqa: E402
from pytest_emogate.model.prompt import answer_text, prompt_text, tokenize_prompt  # noqa: E402

TINY_LLAMA = Path(__file__).resolve().parent.parent / "fixtures" / "tiny" / "llama"
SENTENCE = "Sorry, big sister, for causing trouble to everyone."  # the spec's test vector, samplenew_00006611
# Llama-2 ids from the spec §5.3 (legacy=False for seg0's "[").
SEG0 = [1, 1, 29961, 25580, 29962, 529, 9641, 29958]
PREFIX = [1533, 9641, 29958, 529, 14394, 5299, 19132, 10605, 2565, 14394, 29958, 450, 2022, 297, 4863, 4083, 29901]
MIDDLE = [8221, 29892, 4802, 9883, 29892, 363, 10805, 7458, 304, 14332, 636]
SUFFIX = [29871, 518, 331, 8194, 29962, 3529, 8161, 607, 953, 8194, 3858, 297, 278, 4863, 11524, 29901, 9796,
          29892, 14610, 29892, 21104, 29892, 26230, 29892, 6365, 1255, 29892, 16671, 29892, 8866, 29892, 640,
          3456, 29892, 7404, 29889, 29871, 518, 29914, 25580, 29962]  # fmt: skip
EXPECTED_PROMPT = (
    "<s>[INST] <video><VideoHere></video> <feature><FeatureHere></feature> The person in video says: "
    "Sorry, big sister, for causing trouble to everyone..  [emotion] Please determine which emotion label in the "
    "video represents: happy, sad, neutral, angry, worried, surprise, fear, contempt, doubt.  [/INST]"
)


class StandInTokenizer:
    """Llama-2's tokenizer for exactly the two segments of the spec's test vector (ids from the spec)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def __call__(self, text: str, add_special_tokens: bool) -> dict[str, list[int]]:
        self.calls.append((text, add_special_tokens))
        known = {
            "<s>[INST] <video>": SEG0[1:],
            EXPECTED_PROMPT.split("<VideoHere>")[1]: PREFIX + MIDDLE + SUFFIX,
        }
        return {"input_ids": ([1] if add_special_tokens else []) + known[text]}


class MarkerModel:
    """Embeds id i as a vector filled with i, so positions can be read back from the embeddings."""

    device = torch.device("cpu")

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return ids[:, None].float().expand(-1, 4)


def test_the_prompt_string_is_the_original_one() -> None:
    assert prompt_text(SENTENCE) == EXPECTED_PROMPT


def test_the_prompt_is_split_at_videohere_only_with_bos_on_the_first_part() -> None:
    tokenizer = StandInTokenizer()
    ids = tokenize_prompt(tokenizer, SENTENCE)
    before, after = EXPECTED_PROMPT.split("<VideoHere>")
    assert tokenizer.calls == [(before, True), (after, False)]
    assert "<FeatureHere>" in after  # stays literal text: features and CLS go to <VideoHere>
    assert list(ids.before) == SEG0 and list(ids.after) == PREFIX + MIDDLE + SUFFIX


def test_the_embedding_layout_matches_the_spec_position_table() -> None:
    ids = tokenize_prompt(StandInTokenizer(), SENTENCE)
    # Block markers: image token j -> -(1000 + j); Face, Video, Audio, CLS -> -1, -2, -3, -4.
    markers = [-(1000 + j) for j in range(256)] + [-1, -2, -3, -4]
    block = torch.tensor(markers, dtype=torch.float32)[:, None].expand(-1, 4)
    layout = prompt_embeddings(MarkerModel(), ids, block)[:, 0].long().tolist()  # type: ignore[arg-type]
    assert len(layout) == 337
    assert layout[0] == 1 and layout[1] == 1  # BOS twice
    assert layout[2:8] == SEG0[2:]  # [INST] <video>
    assert layout[8:264] == [-(1000 + j) for j in range(256)]
    assert layout[264:268] == [-1, -2, -3, -4]  # Face, Video, Audio, CLS
    assert layout[268:] == PREFIX + MIDDLE + SUFFIX


def test_the_tiny_tokenizer_gives_two_bos_and_keeps_the_double_spaces() -> None:
    tokenizer = load_tokenizer(TINY_LLAMA)
    ids = tokenize_prompt(tokenizer, "Fine.")
    assert ids.before[:2] == (1, 1) and 1 not in ids.before[2:]
    assert 1 not in ids.after and 2 not in ids.after
    text = tokenizer.decode(list(ids.after))
    assert "<FeatureHere>" in text and "Fine..  [emotion]" in text and text.endswith("doubt.  [/INST]")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("sad</s>", "sad"), ("$$ happy</s>", "happy"), ("The answer: [/INST] angry", "angry"), ("", "")],
)
def test_the_answer_text_is_decoded_as_the_original(answer: str, expected: str) -> None:
    tokenizer = load_tokenizer(TINY_LLAMA)
    generated = tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert answer_text(tokenizer, generated) == expected


def test_each_label_is_one_piece_and_answers_look_like_the_original() -> None:
    tokenizer = load_tokenizer(TINY_LLAMA)
    ids = tokenizer("sad</s>", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["▁sad", "</s>"]
    assert tokenizer.pad_token == "$$" and tokenizer.pad_token_id in tokenizer.all_special_ids


def test_a_transcript_naming_videohere_splits_at_the_template_s_place() -> None:
    tokenizer = load_tokenizer(TINY_LLAMA)
    ids = tokenize_prompt(tokenizer, "<VideoHere>")
    assert ids.before == tokenize_prompt(tokenizer, "Fine.").before
    assert "says: <VideoHere>." in tokenizer.decode(list(ids.after))
