"""Small random-weight image-text checkpoints, built offline, for tests and benchmarks.

Nothing here touches a model hub: the tokenizer is trained on a few hundred generated sentences with
the `tokenizers` library and the weights are random. Each builder writes a folder that
``transformers`` loads like a downloaded checkpoint (``CLIPModel.from_pretrained(out)``,
``AutoTokenizer``, ``AutoImageProcessor``, ``AutoProcessor`` for CLIP).

Presets:

- ``"tiny"``: 32 px images, patch 8, hidden 32, 2 layers, 2 heads, embedding 16 (seconds to export).
- ``make_chinese_clip_checkpoint``: the same "tiny" towers as a ChineseCLIPModel (BERT text tower,
  a word-level WordPiece vocabulary with single characters, CJK ones included, as fallback).
- ``"vit-b-32"`` (CLIP only): the exact ViT-B/32 CLIP architecture (vision 768/12 layers/12 heads,
  patch 32, 224 px; text 512/12/8, projection 512, vocabulary 49408, context 77). Its tokenizer is
  a small trained BPE; the embedding table still has 49408 rows, so the cost is the real one.
- ``"vit-l-14"`` (CLIP): OpenAI's ViT-L/14 (vision 1024/24/16, patch 14; text 768/12/12, projection 768).
- ``"vit-b-16"`` (SigLIP): google/siglip-base-patch16-224 (both towers 768/12/12, vocabulary 32000,
  context 64); (Chinese-CLIP): a ViT-B/16 and a BERT-base text tower (vocabulary 21128).
- ``train_xlmr_tokenizer``: an XLM-RoBERTa-style tokenizer (a SentencePiece-like Unigram model, ``<s>``
  0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, ``<s> ... </s>`` around each text).

Each larger preset keeps the real embedding tables, so its cost is the real model's.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"

# The pre-tokenizer regex of CLIP's own tokenizer (transformers' CLIPTokenizer).
_CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

_ADJECTIVES = (
    "red blue green yellow black white small large old new bright dark wooden metal shiny fluffy "
    "striped round square tall short happy sleepy wet dry"
).split()
_NOUNS = (
    "cat dog car house tree flower bird boat mountain river beach city street bicycle horse cup "
    "table chair book phone lamp window door bridge train plane cake apple banana pizza child woman man"
).split()
_PLACES = (
    "in the park|on the table|at night|under the sun|in the snow|next to a wall|on a beach|in a kitchen|"
    "near the river|on the street|in a forest|at sunset"
).split("|")
_TEMPLATES = (
    "a photo of a {a} {n}",
    "a {a} {n} {p}",
    "two {n}s {p}",
    "{n}",
    "a close-up photo of the {a} {n}, taken {p}.",
    "an old picture showing a {a} {n} and a {a2} {n2} {p}",
    "the {n} is {a}!",
    "a drawing of a {n} with a {a2} {n2}",
    "{a} {n}s and {a2} {n2}s, {p}, in the style of a painting from 1987",
)


def sample_texts(count: int = 400, seed: int = 0) -> list[str]:
    """Varied English captions (1 to ~25 tokens) built from a small grammar."""
    rng = random.Random(seed)
    texts = []
    for i in range(count):
        template = _TEMPLATES[i % len(_TEMPLATES)]
        texts.append(
            template.format(
                a=rng.choice(_ADJECTIVES),
                a2=rng.choice(_ADJECTIVES),
                n=rng.choice(_NOUNS),
                n2=rng.choice(_NOUNS),
                p=rng.choice(_PLACES),
            )
        )
    return texts


def clip_pipeline(tokenizer: Tokenizer) -> Tokenizer:
    """Put CLIP's normalizer, pre-tokenizer and decoder on a BPE tokenizer."""
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def learn_bpe(words: Counter[tuple[str, ...]], base: Sequence[str], vocab_size: int) -> tuple[list[str], list[tuple[str, str]]]:
    """Byte-pair encoding merges learned from word counts, deterministically.

    `words` maps each word (a tuple of its initial symbols) to its count; `base` is the initial
    vocabulary. Each step merges the most frequent adjacent pair (ties: the smaller pair), until
    the vocabulary has `vocab_size` symbols or no pair occurs twice. The `tokenizers` trainer breaks
    ties in hash order, so the same texts give a different vocabulary from run to run; test
    checkpoints built from this one are the same every time.
    """
    vocab = list(dict.fromkeys(base))
    known = set(vocab)
    merges: list[tuple[str, str]] = []
    corpus = {w: c for w, c in words.items() if len(w) > 0}
    while len(vocab) < vocab_size:
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in corpus.items():
            for pair in zip(word, word[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if best[1] < 2:
            break
        (left, right), _ = best
        merged = left + right
        merges.append((left, right))
        if merged not in known:
            known.add(merged)
            vocab.append(merged)
        new_corpus: dict[tuple[str, ...], int] = {}
        for word, count in corpus.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            key = tuple(out)
            new_corpus[key] = new_corpus.get(key, 0) + count
        corpus = new_corpus
    return vocab, merges


def _words(tokenizer: Tokenizer, texts: Iterable[str]) -> Counter[str]:
    """The words `tokenizer`'s normalizer and pre-tokenizer make of `texts`, counted."""
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = tokenizer.normalizer.normalize_str(text) if tokenizer.normalizer else text
        counts.update(piece for piece, _ in tokenizer.pre_tokenizer.pre_tokenize_str(normalized))
    return counts


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1000) -> Tokenizer:
    """A CLIP-style byte-level BPE tokenizer trained on `texts` (deterministic: see `learn_bpe`).

    Lower-cases, splits like CLIP, byte-level symbols with ``</w>`` marking word ends, every byte
    in the base vocabulary (so nothing is ever unknown). ``<|startoftext|>`` (id 0) and
    ``<|endoftext|>`` (id 1) are added around every encoding by a TemplateProcessing
    post-processor; padding (when a caller enables it) uses ``<|endoftext|>``.
    """
    probe = clip_pipeline(Tokenizer(BPE()))
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    base = [BOS, EOS] + alphabet + [c + "</w>" for c in alphabet]
    words: Counter[tuple[str, ...]] = Counter()
    for word, count in _words(probe, texts).items():
        if word:
            words[tuple(word[:-1]) + (word[-1] + "</w>",)] += count
    vocab, merges = learn_bpe(words, base, vocab_size)
    tokenizer = Tokenizer(
        BPE(
            vocab={tok: i for i, tok in enumerate(vocab)},
            merges=merges,
            unk_token=EOS,
            end_of_word_suffix="</w>",
            continuing_subword_prefix="",
            fuse_unk=False,
        )
    )
    clip_pipeline(tokenizer)
    tokenizer.add_special_tokens([BOS, EOS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}", special_tokens=[(BOS, 0), (EOS, 1)]
    )
    return tokenizer


def _bpe_vocab_merges(tokenizer: Tokenizer) -> tuple[dict[str, int], list[tuple[str, str]]]:
    import json

    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


_CLIP_PRESETS = {
    "tiny": dict(
        vision=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=77),
        projection_dim=16,
        vocab_size=None,  # the tokenizer's own
        tokenizer_vocab=1000,
    ),
    "vit-b-32": dict(
        vision=dict(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                  max_position_embeddings=77),
        projection_dim=512,
        vocab_size=49408,
        tokenizer_vocab=2000,
    ),
    "vit-l-14": dict(
        vision=dict(image_size=224, patch_size=14, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                    num_attention_heads=16),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=77),
        projection_dim=768,
        vocab_size=49408,
        tokenizer_vocab=2000,
    ),
}


def make_clip_checkpoint(
    out: Path, *, preset: str = "tiny", texts: Sequence[str] | None = None, seed: int = 0
) -> Path:
    """Write a random-weight CLIPModel checkpoint (model, tokenizer, image processor) to `out`."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    from transformers import CLIPImageProcessorPil as CLIPImageProcessor  # the same, without torchvision

    if preset not in _CLIP_PRESETS:
        raise ValueError(f"unknown CLIP preset {preset!r} (have {', '.join(_CLIP_PRESETS)})")
    p = _CLIP_PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    trained = train_bpe_tokenizer(texts if texts is not None else sample_texts(seed=seed), p["tokenizer_vocab"])
    vocab, merges = _bpe_vocab_merges(trained)
    context = p["text"]["max_position_embeddings"]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=context)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    vocab_size = p["vocab_size"] or len(vocab)

    config = CLIPConfig(
        text_config=dict(p["text"], vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(p["vision"]),
        projection_dim=p["projection_dim"],
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    size = p["vision"]["image_size"]
    image_processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    model.save_pretrained(out)

    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)
    image_processor.save_pretrained(out)  # preprocessor_config.json, as hub checkpoints have it
    return out


_SIGLIP_PRESETS = {
    "tiny": dict(
        vision=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=64),
        vocab_size=None,  # the tokenizer's own
        tokenizer_vocab=1000,
    ),
    "vit-b-16": dict(  # google/siglip-base-patch16-224
        vision=dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=64),
        vocab_size=32000,
        tokenizer_vocab=2000,
    ),
}

XLMR_SPECIAL = ("<s>", "<pad>", "</s>", "<unk>")


def train_xlmr_tokenizer(texts: Iterable[str], vocab_size: int = 1000) -> Tokenizer:
    """An XLM-RoBERTa-style tokenizer.json: a Unigram model over metaspace pieces (what SentencePiece
    writes and `tokenizers` reads), ids 0-3 <s> <pad> </s> <unk>, and <s> $A </s> around a text."""
    from tokenizers import models, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(XLMR_SPECIAL), unk_token="<unk>",
                                      show_progress=False)
    tokenizer.train_from_iterator(list(texts) + ["一张猫的照片", "公园里的红色汽车", "狗在海滩上"], trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tokenizer


SIGLIP_PAD = "<pad>"
SIGLIP_EOS = "</s>"
SIGLIP_UNK = "<unk>"


def train_siglip_tokenizer(texts: Iterable[str], vocab_size: int = 1000) -> Tokenizer:
    """A SigLIP-style tokenizer: lower-case BPE over metaspace words (``▁photo``), ``</s>`` appended,
    no start token; characters never seen in `texts` become ``<unk>``. Deterministic (`learn_bpe`)."""
    tokenizer = Tokenizer(BPE())
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase(), normalizers.Strip()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    counts = _words(tokenizer, texts)
    alphabet = sorted({ch for word in counts for ch in word})
    words: Counter[tuple[str, ...]] = Counter({tuple(w): c for w, c in counts.items() if w})
    vocab, merges = learn_bpe(words, [SIGLIP_PAD, SIGLIP_EOS, SIGLIP_UNK] + alphabet, vocab_size)
    trained = Tokenizer(BPE(vocab={tok: i for i, tok in enumerate(vocab)}, merges=merges, unk_token=SIGLIP_UNK,
                            fuse_unk=True))
    trained.normalizer = tokenizer.normalizer
    trained.pre_tokenizer = tokenizer.pre_tokenizer
    trained.decoder = decoders.Metaspace()
    trained.add_special_tokens([SIGLIP_PAD, SIGLIP_EOS, SIGLIP_UNK])
    eos = trained.token_to_id(SIGLIP_EOS)
    trained.post_processor = processors.TemplateProcessing(
        single=f"$A {SIGLIP_EOS}", pair=f"$A {SIGLIP_EOS} $B {SIGLIP_EOS}", special_tokens=[(SIGLIP_EOS, eos)]
    )
    return trained


def make_siglip_checkpoint(
    out: Path, *, preset: str = "tiny", texts: Sequence[str] | None = None, seed: int = 0
) -> Path:
    """Write a random-weight SiglipModel checkpoint (model, tokenizer, image processor) to `out`."""
    import torch
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipModel

    from transformers import SiglipImageProcessorPil as SiglipImageProcessor

    if preset not in _SIGLIP_PRESETS:
        raise ValueError(f"unknown SigLIP preset {preset!r} (have {', '.join(_SIGLIP_PRESETS)})")
    p = _SIGLIP_PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    trained = train_siglip_tokenizer(texts if texts is not None else sample_texts(seed=seed), p["tokenizer_vocab"])
    context = p["text"]["max_position_embeddings"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=trained,
        eos_token=SIGLIP_EOS,
        pad_token=SIGLIP_EOS,  # as google/siglip-*: padding with </s>
        unk_token=SIGLIP_UNK,
        model_max_length=context,
        model_input_names=["input_ids"],
    )
    eos = tokenizer.eos_token_id
    config = SiglipConfig(
        text_config=dict(p["text"], vocab_size=p["vocab_size"] or trained.get_vocab_size(), bos_token_id=eos,
                         eos_token_id=eos,
                         pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(p["vision"]),
    )
    torch.manual_seed(seed)
    model = SiglipModel(config).eval()
    size = p["vision"]["image_size"]
    image_processor = SiglipImageProcessor(size={"height": size, "width": size})
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    image_processor.save_pretrained(out)
    return out



_CHINESE_CLIP_PRESETS = {
    "tiny": dict(_CLIP_PRESETS["tiny"], text=dict(_CLIP_PRESETS["tiny"]["text"], max_position_embeddings=64),
                 vocab_size=None),
    "vit-b-16": dict(  # OFA-Sys/chinese-clip-vit-base-patch16: a BERT-base text tower (RoBERTa-wwm-ext)
        vision=dict(image_size=224, patch_size=16, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  max_position_embeddings=512),
        projection_dim=512,
        vocab_size=21128,
    ),
}


def make_chinese_clip_checkpoint(
    out: Path, *, preset: str = "tiny", texts: Sequence[str] | None = None, seed: int = 0
) -> Path:
    """Write a random-weight ChineseCLIPModel checkpoint (BERT text tower) to `out`."""
    import torch
    from transformers import BertTokenizer, ChineseCLIPConfig, ChineseCLIPModel

    from transformers import ChineseCLIPImageProcessorPil as ChineseCLIPImageProcessor

    if preset not in _CHINESE_CLIP_PRESETS:
        raise ValueError(f"unknown Chinese-CLIP preset {preset!r} (have {', '.join(_CHINESE_CLIP_PRESETS)})")
    p = _CHINESE_CLIP_PRESETS[preset]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = list(texts if texts is not None else sample_texts(seed=seed))
    probe = Tokenizer(BPE())
    probe.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    probe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = _words(probe, corpus)
    chars = sorted({ch for word in words for ch in word} | set("一张猫狗的照片在公园里红色蓝色"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    vocab += chars + ["##" + ch for ch in chars]
    vocab = list(dict.fromkeys(vocab))
    context = 52  # Chinese-CLIP's own context length
    tokenizer = BertTokenizer(vocab={tok: i for i, tok in enumerate(vocab)}, model_max_length=context)
    config = ChineseCLIPConfig(
        text_config=dict(vocab_size=p["vocab_size"] or len(vocab), hidden_size=p["text"]["hidden_size"],
                         intermediate_size=p["text"]["intermediate_size"],
                         num_hidden_layers=p["text"]["num_hidden_layers"],
                         num_attention_heads=p["text"]["num_attention_heads"],
                         max_position_embeddings=p["text"]["max_position_embeddings"], pad_token_id=0),
        vision_config=dict(p["vision"]),
        projection_dim=p["projection_dim"],
    )
    torch.manual_seed(seed)
    model = ChineseCLIPModel(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    size = p["vision"]["image_size"]
    ChineseCLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(out)
    return out
