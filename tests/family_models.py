"""Tiny random classifiers of every supported family, each saved as a local Hugging Face folder with a
tokenizer of the family's own class, built offline (no hub, no network).

A tokenizer of the family's own class matters: a RoBERTa tokenizer gives no token_type_ids, a decoder pads
with its end-of-text token, and a wrong fixed input list shows only then.

Example::

    >>> path = build("roberta", tmp_path / "roberta")     # config.json, model.safetensors, tokenizer.json
    >>> model, tok, needs_training = check(path)           # loaded through compression.models
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import FILLER, NEG, POS

# Tiny sizes, those of the registry tests (test_methods.py): the catalogue's examples are sized for them
# (distill's aggressive student is 32 wide), and every method still has two layers and four heads to cut.
HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 64, 2, 4, 128, 128
LABELS = ["negative", "positive"]


def sentences(n: int = 300, seed: int = 0) -> list[str]:
    """The fixture's vocabulary in sentences like make_csv's, to train the subword tokenizers on."""
    rng = random.Random(seed)
    words = POS + NEG + FILLER
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + f" {i % 7}" for i in range(n)]


def _word_vocab(specials: list[str]) -> dict[str, int]:
    words = specials + sorted(set(POS + NEG + FILLER + [str(i) for i in range(7)]))
    return {w: i for i, w in enumerate(words)}


def _byte_bpe(specials: list[str], vocab_size: int = 320) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE (GPT-2/RoBERTa style) trained on the fixture sentences: (vocab, merges)."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences(), vocab_size=vocab_size, min_frequency=1, special_tokens=specials,
                            show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _unigram(folder: Path, specials: list[str], tail: tuple[str, ...] = (), vocab_size: int = 90):
    """A sentencepiece unigram model trained on the fixture sentences, as the (piece, score) list that the
    sentencepiece families' tokenizers take; the family's special tokens first, in its own order."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / "spm"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences()), model_prefix=str(prefix),
                                   vocab_size=vocab_size, model_type="unigram", character_coverage=1.0,
                                   hard_vocab_limit=False, minloglevel=2, num_threads=1)
    sp = spm.SentencePieceProcessor(model_file=str(prefix) + ".model")
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())
              if not (sp.is_unknown(i) or sp.is_control(i))]
    return [(s, 0.0) for s in specials] + pieces + [(s, 0.0) for s in tail]


def _save(path: Path, model, tok) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _encoder(path, config_cls, model_cls, tok, **extra):
    import torch

    torch.manual_seed(0)
    kw = dict(vocab_size=len(tok), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
              intermediate_size=FFN, max_position_embeddings=POSITIONS, num_labels=2, pad_token_id=tok.pad_token_id)
    cfg = config_cls(**{**kw, **extra})
    return _save(path, model_cls(cfg), tok)


def bert(path: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = BertTokenizerFast(vocab=_word_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    return _encoder(path, BertConfig, BertForSequenceClassification, tok)


def electra(path: Path) -> Path:
    from transformers import ElectraConfig, ElectraForSequenceClassification, ElectraTokenizerFast

    tok = ElectraTokenizerFast(vocab=_word_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    return _encoder(path, ElectraConfig, ElectraForSequenceClassification, tok, embedding_size=HIDDEN)


def mpnet(path: Path) -> Path:
    from transformers import MPNetConfig, MPNetForSequenceClassification, MPNetTokenizerFast

    tok = MPNetTokenizerFast(vocab=_word_vocab(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]))
    return _encoder(path, MPNetConfig, MPNetForSequenceClassification, tok,
                    bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)


def distilbert(path: Path) -> Path:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

    tok = DistilBertTokenizerFast(vocab=_word_vocab(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=len(tok), dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN,
                           max_position_embeddings=POSITIONS, num_labels=2, pad_token_id=tok.pad_token_id)
    return _save(path, DistilBertForSequenceClassification(cfg), tok)


def roberta(path: Path) -> Path:
    from transformers import RobertaConfig, RobertaForSequenceClassification, RobertaTokenizerFast

    vocab, merges = _byte_bpe(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok = RobertaTokenizerFast(vocab=vocab, merges=merges)
    # RoBERTa's positions start after the padding index, so it needs two more than the longest input
    return _encoder(path, RobertaConfig, RobertaForSequenceClassification, tok, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, type_vocab_size=1, max_position_embeddings=POSITIONS + 2)


def xlm_roberta(path: Path) -> Path:
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification, XLMRobertaTokenizerFast

    tok = XLMRobertaTokenizerFast(vocab=_unigram(path / "spm", ["<s>", "<pad>", "</s>", "<unk>"], ("<mask>",)))
    return _encoder(path, XLMRobertaConfig, XLMRobertaForSequenceClassification, tok, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, type_vocab_size=1, max_position_embeddings=POSITIONS + 2)


def camembert(path: Path) -> Path:
    from transformers import CamembertConfig, CamembertForSequenceClassification, CamembertTokenizerFast

    tok = CamembertTokenizerFast(vocab=_unigram(path / "spm", ["<s>", "<pad>", "</s>", "<unk>"], ("<mask>",)))
    return _encoder(path, CamembertConfig, CamembertForSequenceClassification, tok, bos_token_id=tok.bos_token_id,
                    eos_token_id=tok.eos_token_id, type_vocab_size=1, max_position_embeddings=POSITIONS + 2)


def deberta_v3(path: Path) -> Path:
    """DeBERTa-v2's classes with v3's settings: relative positions only, shared attention keys."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, DebertaV2Tokenizer

    vocab = _unigram(path / "spm", ["[PAD]", "[CLS]", "[SEP]", "[UNK]"], ("[MASK]",))
    tok = DebertaV2Tokenizer(vocab=vocab, unk_id=3)
    return _encoder(path, DebertaV2Config, DebertaV2ForSequenceClassification, tok, relative_attention=True,
                    position_biased_input=False, pos_att_type=["p2c", "c2p"], max_relative_positions=-1,
                    position_buckets=64, norm_rel_ebd="layer_norm", share_att_key=True, type_vocab_size=0)


def albert(path: Path) -> Path:
    from transformers import AlbertConfig, AlbertForSequenceClassification, AlbertTokenizer

    # ALBERT's tokenizer expects the unknown token at id 1
    tok = AlbertTokenizer(vocab=_unigram(path / "spm", ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]))
    return _encoder(path, AlbertConfig, AlbertForSequenceClassification, tok, embedding_size=16)


def modernbert(path: Path) -> Path:
    """ModernBERT ships a plain fast BPE tokenizer (PreTrainedTokenizerFast) with BERT's special tokens."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import ModernBertConfig, ModernBertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    vocab, merges = _byte_bpe(specials)
    t = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    t.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=t, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                  pad_token="[PAD]", mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(0)
    cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                           num_attention_heads=HEADS, intermediate_size=FFN, max_position_embeddings=POSITIONS,
                           num_labels=2, pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
                           sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                           global_attn_every_n_layers=2, local_attention=16, initializer_range=0.1)
    return _save(path, ModernBertForSequenceClassification(cfg), tok)


def gpt2(path: Path) -> Path:
    """A decoder: it classifies on the last non-padding token and pads with its end-of-text token."""
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2TokenizerFast

    vocab, merges = _byte_bpe(["<|endoftext|>"])
    tok = GPT2TokenizerFast(vocab=vocab, merges=merges)
    tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS, n_inner=FFN,
                     n_positions=POSITIONS, num_labels=2, pad_token_id=tok.pad_token_id,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    return _save(path, GPT2ForSequenceClassification(cfg), tok)


def qwen2(path: Path) -> Path:
    """The Llama-style family: rotary positions, RMSNorm, a gated FFN, grouped key/value heads, left padding."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification, Qwen2TokenizerFast

    vocab, merges = _byte_bpe(["<|endoftext|>"])
    tok = Qwen2TokenizerFast(vocab=vocab, merges=merges, padding_side="left")
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      num_key_value_heads=2, intermediate_size=FFN, max_position_embeddings=POSITIONS, num_labels=2,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    return _save(path, Qwen2ForSequenceClassification(cfg), tok)


# name -> builder; the name is what the matrix's test ids show
FAMILIES = {
    "bert": bert, "distilbert": distilbert, "roberta": roberta, "xlm-roberta": xlm_roberta, "camembert": camembert,
    "electra": electra, "deberta-v2": deberta_v3, "albert": albert, "mpnet": mpnet, "modernbert": modernbert,
    "gpt2": gpt2, "qwen2": qwen2,
}


def build(family: str, path: Path) -> Path:
    """Save family's tiny random classifier and tokenizer under ``path``: ``build("gpt2", tmp / "gpt2")``."""
    return FAMILIES[family](path)


def check(path: Path):
    """Load a folder the way the engine does, and feed its tokenizer's output to the model once.

    Returns (model, tokenizer, needs_training), as ``compression.models.load_for_labels``.
    """
    import torch

    from compression.models import ModelSource, load_for_labels

    model, tok, needs_training = load_for_labels(ModelSource("local", str(path)), LABELS)
    batch = tok(sentences(4), padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert set(batch) == set(tok.model_input_names), (set(batch), tok.model_input_names)
    real = batch["input_ids"][batch["attention_mask"].bool()]  # a decoder pads with its unknown token
    assert (real != tok.unk_token_id).float().mean() > 0.9, "the tokenizer knows the fixture words"
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    assert logits.shape == (4, 2) and torch.isfinite(logits).all()
    return model, tok, needs_training
