"""Python reference of SPEC.md section 4: rinna's T5Tokenizer (slow, do_lower_case=True) followed
by japanese_clip.tokenize, rebuilt on the `sentencepiece` module because transformers is not
installed here. The C++ tokenizer (shim/tokenizer.cc) must give the same ids for every input.

    import sentencepiece, ref_tokenizer
    sp = sentencepiece.SentencePieceProcessor(model_file=".../google_sp.model")
    ref_tokenizer.raw_ids("犬の写真", sp)          # [9, 1651, 10478]
    ids, mask = ref_tokenizer.tokenize(["犬"], sp)  # [[4, 9, 1651, 3, ...]], [[1, 1, 1, 0, ...]]

How each step maps to transformers 4.x `PreTrainedTokenizer.tokenize` (see shim/tokenizer.cc
for the versions that differ):
  1. lower-casing: `re.sub(r"(<specials>)|(.+?)", lambda m: m.group(1) or m.group(2).lower(), text)`
     -> one code point at a time, special-token strings of the original text left alone.
  2. `tokens_trie.split(text)` on the lower-cased text, then for each special token
     `right.lstrip()` / `left.rstrip()` (str.isspace whitespace); empty chunks are skipped.
  3. `sp_model.encode(chunk, out_type=str)` + `piece_to_id`: one id per piece; an unknown run
     is one piece, so one <unk>.
  4. `tokenizer(texts, max_length=76, padding="max_length", truncation=True,
     add_special_tokens=False)` then [CLS] prepended with attention 1.
"""
import re

SPECIAL_TOKENS = ("<s>", "</s>", "<unk>", "[SEP]", "[PAD]", "[CLS]", "[MASK]")
# Longest first, so the alternation is a longest match at each position (no special token is a
# prefix of another today, but the rule should not depend on that).
_SPECIAL_ALT = "|".join(re.escape(t) for t in sorted(SPECIAL_TOKENS, key=len, reverse=True))
_LOWER_RE = re.compile(r"(" + _SPECIAL_ALT + r")|(.+?)")
_SPLIT_RE = re.compile(r"(" + _SPECIAL_ALT + r")")

CLS_ID = 4
PAD_ID = 3


def lower_outside_specials(text):
    """Step 1: str.lower per code point, except inside special-token strings."""
    return _LOWER_RE.sub(lambda m: m.group(1) or m.group(2).lower(), text)


def split_on_specials(text):
    """Step 2: chunks and special tokens, with the whitespace stripping of transformers."""
    parts = _SPLIT_RE.split(text)  # odd indices are the special tokens
    tokens = [p for p in parts]
    is_special = [i % 2 == 1 for i in range(len(parts))]
    for i, sp in enumerate(is_special):
        if not sp:
            continue
        if i + 1 < len(tokens) and not is_special[i + 1] and tokens[i + 1]:
            tokens[i + 1] = tokens[i + 1].lstrip()
        if i > 0 and not is_special[i - 1] and tokens[i - 1]:
            tokens[i - 1] = tokens[i - 1].rstrip()
    return [(t, s) for t, s in zip(tokens, is_special) if t]


def raw_ids(text, sp):
    """Steps 1-3: the ids before [CLS], truncation and padding. `text` is str or bytes (bytes are
    decoded with errors="replace", like the C API)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    out = []
    for chunk, special in split_on_specials(lower_outside_specials(text)):
        if special:
            out.append(sp.piece_to_id(chunk))
        else:
            out.extend(sp.encode(chunk))
    return out


def tokenize_one(text, sp, max_seq_len=77):
    """Step 4 for one text: (ids, mask, n_tokens, n_dropped)."""
    raw = raw_ids(text, sp)
    keep = raw[: max_seq_len - 1]
    ids = [CLS_ID] + keep + [PAD_ID] * (max_seq_len - 1 - len(keep))
    mask = [1] * (1 + len(keep)) + [0] * (max_seq_len - 1 - len(keep))
    return ids, mask, 1 + len(keep), len(raw) - len(keep)


def tokenize(texts, sp, max_seq_len=77):
    """japanese_clip.tokenize: lists of max_seq_len ids and attention-mask values per text."""
    if isinstance(texts, (str, bytes)):
        texts = [texts]
    ids, mask = [], []
    for t in texts:
        i, m, _, _ = tokenize_one(t, sp, max_seq_len)
        ids.append(i)
        mask.append(m)
    return ids, mask
