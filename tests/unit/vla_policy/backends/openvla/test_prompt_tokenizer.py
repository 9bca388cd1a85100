"""Prompt ids with a real Llama 2-style tokenizer: a SentencePiece BPE model trained here with Llama 2's
trainer settings, turned into transformers' LlamaTokenizer the way transformers converts a
tokenizer.model (vocabulary in piece order, merges from ``generate_merges``), saved and loaded back
through the backend's ``load_tokenizer``. The reference is SentencePiece itself: what Llama 2 was
trained on and what the slow LlamaTokenizer returns, plus the reference ``predict_action``'s rule
that appends the empty piece "▁" (29871 in Llama 2) when the prompt does not end in it.
"""

from __future__ import annotations

import pytest
import sentencepiece
from transformers import LlamaTokenizer
from transformers.convert_slow_tokenizer import generate_merges

from vla_policy.backends.openvla.loading import load_tokenizer
from vla_policy.backends.openvla.processing import build_prompt, prompt_token_ids, with_suffix_token

CORPUS = [
    "In: What action should the robot take to put the red cube in the bowl?",
    "Out: pick up the spoon and place it on the towel, move the pot to the left burner",
    "open the drawer, close the microwave, fold the cloth from right to left 0123456789",
] * 40

# Llama 2's SentencePiece trainer spec (the settings read from its tokenizer.model).
LLAMA2_TRAINER = {
    "model_type": "bpe",
    "byte_fallback": True,
    "split_digits": True,
    "add_dummy_prefix": True,
    "remove_extra_whitespaces": False,
    "normalization_rule_name": "identity",
    "allow_whitespace_only_pieces": True,
    "unk_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "pad_id": -1,
}


@pytest.fixture(scope="module")
def spm_and_tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama_spm")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(root / "spm"),
        vocab_size=420,
        hard_vocab_limit=False,
        minloglevel=2,
        **LLAMA2_TRAINER,
    )
    spm = sentencepiece.SentencePieceProcessor(model_file=str(root / "spm.model"))
    vocab = {spm.id_to_piece(i): i for i in range(spm.get_piece_size())}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab), legacy=False)
    tokenizer.add_special_tokens({"pad_token": "<PAD>"})  # OpenVLA's <PAD>, after the vocabulary
    tokenizer.save_pretrained(str(root / "checkpoint"))
    return spm, load_tokenizer(root / "checkpoint")


@pytest.mark.parametrize(
    "instruction",
    [
        "put the red cube in the bowl",
        "Pick Up the Spoon",
        "move the pot 12 cm to the left",
        "fold  the cloth",
    ],
)
def test_prompt_ids_equal_sentencepiece_plus_the_empty_piece(spm_and_tokenizer, instruction):
    spm, tokenizer = spm_and_tokenizer
    space = spm.piece_to_id("▁")
    assert space != spm.unk_id() and tokenizer.convert_tokens_to_ids("▁") == space
    reference = [spm.bos_id()] + spm.encode(build_prompt(instruction))
    assert reference[-1] != space  # "...Out:" ends in ":", so the reference appends the empty piece
    assert prompt_token_ids(tokenizer, instruction, suffix_token_id=space) == [*reference, space]


def test_a_prompt_already_ending_in_the_empty_piece_is_left_alone(spm_and_tokenizer):
    spm, tokenizer = spm_and_tokenizer
    space = spm.piece_to_id("▁")
    ids = [spm.bos_id()] + spm.encode(build_prompt("open the drawer") + " ")
    assert ids[-1] == space  # a trailing space encodes as the empty piece
    assert with_suffix_token(ids, space) == ids
    assert with_suffix_token(ids[:-1], space) == ids
    assert with_suffix_token([], space) == [space]


def test_digits_are_split_and_bytes_fall_back(spm_and_tokenizer):
    spm, tokenizer = spm_and_tokenizer
    text = "move 12 cm\n"
    assert tokenizer(text, add_special_tokens=False).input_ids == spm.encode(text)
    assert "<0x0A>" in tokenizer.convert_ids_to_tokens(spm.encode(text))
