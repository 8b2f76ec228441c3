"""A bundle's tokenizer, set up for what reads it: the text tower (truncated and padded as it expects)
or chunking (a whole page, neither)."""

from __future__ import annotations

from tokenizers import Tokenizer

from .bundle import Bundle


def load_tokenizer(bundle: Bundle) -> Tokenizer:
    """The bundle's tokenizer, truncating to the context length and padding as the tower expects."""
    spec = bundle.text_spec
    tokenizer = Tokenizer.from_file(str(bundle.tokenizer_path()))
    tokenizer.enable_truncation(max_length=spec.context_length)
    if spec.padding == "max_length":
        tokenizer.enable_padding(pad_id=spec.pad_id, length=spec.context_length)
    else:  # "longest": the tower takes any length, CLIP's causal mask makes padding inert
        tokenizer.enable_padding(pad_id=spec.pad_id)
    return tokenizer


def chunk_tokenizer(bundle: Bundle) -> Tokenizer:
    """The bundle's tokenizer as chunking needs it: it sees a whole page, so no truncation and no padding
    (tokenizer.json may carry either; the encoder's copy has both)."""
    tokenizer = Tokenizer.from_file(str(bundle.tokenizer_path()))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def content_tokens(bundle: Bundle) -> int:
    """How many text tokens one chunk may hold: the context minus the special tokens added."""
    tokenizer = Tokenizer.from_file(str(bundle.tokenizer_path()))
    specials = tokenizer.num_special_tokens_to_add(False)
    return bundle.text_spec.context_length - specials
