"""The tokenizer: SPEC.md section 4 vectors on the Python reference, then the C tokenizer
(shim/tokenizer.cc, driven through build/tests/shim/test_tokenizer) against the reference on
several hundred strings, id for id, plus its building blocks (UTF-8 decoding, lower-case and
whitespace tables) against Python itself."""
import json
import random
import struct
import subprocess
import unicodedata

import pytest
import sentencepiece

import ref_tokenizer
from conftest import BUILD

SPEC_VECTORS = [
    ("犬", [9, 1651]),
    ("猫", [9, 4324]),
    ("象", [9, 6378]),
    ("犬の写真", [9, 1651, 10478]),
    ("テンチの写真", [9, 1780, 276, 10478]),
    ("Hello World!  ＡＢＣ ｶﾀｶﾅ", [9, 22848, 463, 7375, 543, 9, 8493, 9, 26107]),
    ("😀😀 x 😀", [9, 0, 4295, 9, 0]),
    ("", []),
    ("  空白  のテスト  ", [9, 21942, 9, 10, 2666]),
    ("iPhoneとGPU", [9, 22021, 20, 2562, 534]),
    ("㍱", [3440, 0, 106]),
    ("[CLS]4年に1度オリンピックは開かれる。", [4, 1602, 44, 24, 368, 1462, 11, 21583, 8]),
]

PROG = BUILD / "tests" / "shim" / "test_tokenizer"


@pytest.fixture(scope="module")
def sp(spm_model):
    return sentencepiece.SentencePieceProcessor(model_file=str(spm_model))


@pytest.fixture(scope="module")
def prog():
    if not PROG.exists():
        pytest.fail(f"{PROG} missing: build it with `make build/tests/shim/test_tokenizer`")
    return PROG


def records(items):
    out = bytearray()
    for b in items:
        out += struct.pack("<I", len(b)) + b
    return bytes(out)


def run_prog(prog, tmp_path, args, items=None):
    argv = [str(prog)] + args
    if items is not None:
        f = tmp_path / "records.bin"
        f.write_bytes(records(items))
        argv += [str(f)]
    r = subprocess.run(argv, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode().splitlines()


# ---- the reference against SPEC.md --------------------------------------------------------

@pytest.mark.parametrize("text,want", SPEC_VECTORS, ids=[repr(t) for t, _ in SPEC_VECTORS])
def test_reference_spec_vectors(sp, text, want):
    assert ref_tokenizer.raw_ids(text, sp) == want


def test_reference_full_input(sp):
    ids, mask = ref_tokenizer.tokenize(["犬"], sp)
    assert ids[0] == [4, 9, 1651] + [3] * 74
    assert mask[0] == [1, 1, 1] + [0] * 74


def test_reference_rules(sp):
    # step 1: special tokens of the original text keep their case; one-to-many lower-casing
    assert ref_tokenizer.lower_outside_specials("A[CLS]İΣ") == "a[CLS]i\u0307σ"
    # step 2: lower-casing may create a special token (transformers splits after lowering)
    assert ref_tokenizer.raw_ids("<UNK>", sp) == [0]
    assert ref_tokenizer.raw_ids("[cls]", sp) != [4]
    # whitespace next to a special token is str.isspace whitespace, incl. U+3000 and U+001C
    assert ref_tokenizer.split_on_specials("a\u3000[SEP]\u3000b\x1c") == [("a", False), ("[SEP]", True), ("b\x1c", False)]
    assert ref_tokenizer.raw_ids("\x1c[SEP]", sp) == [5]
    # truncation
    ids, mask, n, dropped = ref_tokenizer.tokenize_one("犬 " * 100, sp)
    assert n == 77 and dropped == len(ref_tokenizer.raw_ids("犬 " * 100, sp)) - 76 and sum(mask) == 77


# ---- building blocks of the C tokenizer ---------------------------------------------------

def test_lower_table_matches_python(prog, tmp_path):
    got = {}
    for line in run_prog(prog, tmp_path, ["--dump-lower"]):
        cp, *out = map(int, line.split())
        got[cp] = out
    want = {}
    for cp in range(0x110000):
        low = chr(cp).lower()
        if low != chr(cp):
            want[cp] = [ord(c) for c in low]
    assert len(want) > 1400
    assert got == want, f"differ at {sorted(set(got.items()) ^ set(want.items()))[:5]}"


def test_space_table_matches_python(prog, tmp_path):
    got = [int(x) for x in run_prog(prog, tmp_path, ["--dump-space"])]
    want = [cp for cp in range(0x110000) if chr(cp).isspace()]
    assert got == want
    assert 0x3000 in got and 0x85 in got and 0x200B not in got


def utf8_cases():
    fixed = [
        b"", b"abc", b"\xff", b"\xc0\xaf", b"\xc2", b"\xc2A", b"\xe3\x81", b"\xe3\x81A", b"\xe3\x81\x82",
        b"\xed\xa0\x80", b"\xed\x9f\xbf", b"\xe0\x80\xaf", b"\xe0\xa0\x80", b"\xf0\x80\x80\x80", b"\xf0\x90\x80\x80",
        b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\x80",
        b"\x80\x80\x80", b"a\x00b", b"\xef\xbf\xbd", b"\xe2\x82\xac\xe2\x82", b"\xf1\x80\x80\xe3\x81\x82",
    ]
    rnd = random.Random(7)
    pool = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC,
            0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF]
    for _ in range(3000):
        fixed.append(bytes(rnd.choice(pool) for _ in range(rnd.randint(1, 8))))
    return fixed


def test_utf8_decode_matches_python(prog, tmp_path):
    cases = utf8_cases()
    lines = run_prog(prog, tmp_path, ["--decode"], cases)
    assert len(lines) == len(cases)
    for b, line in zip(cases, lines):
        want = [ord(c) for c in b.decode("utf-8", errors="replace")]
        got = [int(x) for x in line.split()]
        assert got == want, f"{b!r}: {got} != {want}"


# ---- the C tokenizer against the reference ------------------------------------------------

SPECIALS = ["<s>", "</s>", "<unk>", "[SEP]", "[PAD]", "[CLS]", "[MASK]", "<UNK>", "<S>", "</S>", "[cls]",
            "[CLS", "CLS]", "<unk", "[[CLS]]", "<<s>>"]
WS = [" ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\xa0", "\u3000",
      "\u2003", "\u2028", "\u200b", "\ufeff", "\x00"]
WORDS = ["犬", "猫の写真", "テンチ", "ひらがな", "カタカナ", "ｶﾀｶﾅ", "ﾊﾟﾝ", "ＡＢＣ", "１２３", "漢字仮名交じり文",
         "Hello", "WORLD", "iPhone", "GPU", "ΣΑΣ", "ΟΔΥΣΣΕΥΣ", "Москва", "ПРИВЕТ", "İstanbul", "DİYARBAKIR",
         "ǅ", "ẞ", "Ω", "K", "Å", "ﬁ", "㍱", "㌔", "①", "😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "é", "e\u0301",
         "\u0130\u0130", "ß", "ŉ", "ᾼ", "Ⅻ", "ⓐⒷ", "𝐀𝐁", "\U0001F600\U0001F601", "a.b,c!?", "(括弧)",
         "「かぎ」", "〜", "ー", "・", "\x07", "\x1b[0m", "\ud7ff", "\ue000", "\U0010ffff", "\ufffd"]


def generated_texts():
    texts = [t for t, _ in SPEC_VECTORS]
    texts += ["", " ", "   ", "\t\n\r", "\u3000\u3000", "\x1c\x1d\x1e\x1f", "\x0b", "\x85", "\x00", "\x00\x00",
              "[CLS]", "[CLS][SEP]", "[CLS] [SEP]", " [CLS] ", "\u3000[MASK]\u3000", "a[PAD]b", "a [PAD] b",
              "<s>犬</s>", "<s> 犬 </s>", "犬<unk>猫", "犬 <unk> 猫", "<UNK>", "<Unk>犬", "[MASK][MASK][MASK]",
              "x\x1c[SEP]\x1cy", "\x85[CLS]\x85", "[CLS]\u200b犬", "[SEP]\n\n犬\n\n[SEP]", "İ", "ΣΣ", "ǅǆǄ",
              "A" * 100, "犬" * 100, "犬 " * 100, "[CLS]" * 100, "テスト " * 38, "テスト " * 39]
    # 10 kB strings
    texts += ["吾輩は猫である。名前はまだ無い。" * 230, ("Hello World! " * 800)[:10240], "😀" * 2600]
    rnd = random.Random(1234)
    alphabet = SPECIALS + WS + WORDS
    for n in range(260):
        k = rnd.randint(1, 12 if n % 10 else 60)
        texts.append("".join(rnd.choice(alphabet) for _ in range(k)))
    # random code points from the whole range (no surrogates)
    for _ in range(40):
        cps = [rnd.randint(0, 0x10FFFF) for _ in range(rnd.randint(1, 10))]
        texts.append("".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF))
    items = [t.encode("utf-8", errors="surrogatepass") for t in texts]
    # invalid UTF-8, also next to special tokens and whitespace
    items += [b"\xff", b"\xe3\x81", b"[CLS]\xe3\x81 ", b"\xed\xa0\x80\xed\xb0\x80", b"\xc3(\xa0\xa1",
              b"\xf0\x9f\x98[SEP]\xf0\x9f\x98", b"a\xc2\xa0[PAD]\xc2b", b"\xe3\x80\x80\xe3\x80[CLS]", b"\x80\xbf\x80"]
    for _ in range(30):
        t = rnd.choice(WORDS + SPECIALS).encode()
        cut = rnd.randint(0, len(t))
        items.append(t[:cut] + bytes([rnd.randint(0x80, 0xFF)]) + t[cut:] + rnd.choice(SPECIALS).encode())
    return items


@pytest.fixture(scope="module")
def c_results(prog, tmp_path_factory):
    items = generated_texts()
    tmp = tmp_path_factory.mktemp("tok")
    out = {}
    for max_seq_len in (77, 8):
        lines = run_prog(prog, tmp, ["--max-seq-len", str(max_seq_len), "--batch"], items)
        assert len(lines) == len(items)
        out[max_seq_len] = [json.loads(line) for line in lines]
    return items, out


def test_corpus_is_large_enough(c_results):
    items, _ = c_results
    assert len(items) >= 200
    assert any(len(b) >= 10000 for b in items)
    assert any(b"\x00" in b for b in items)


@pytest.mark.parametrize("max_seq_len", [77, 8])
def test_c_matches_reference(c_results, sp, max_seq_len):
    items, results = c_results
    mismatches = []
    for b, got in zip(items, results[max_seq_len]):
        want_raw = ref_tokenizer.raw_ids(b, sp)
        ids, mask, n_tokens, n_dropped = ref_tokenizer.tokenize_one(b, sp, max_seq_len)
        want = {"status": "ok", "raw": want_raw, "ids": ids, "mask": mask, "n_tokens": n_tokens,
                "n_dropped": n_dropped}
        if got != want:
            mismatches.append((b, {k: (got.get(k), want[k]) for k in want if got.get(k) != want[k]}))
    assert not mismatches, f"{len(mismatches)} of {len(items)} differ, e.g. {mismatches[:3]}"


def test_c_truncation_counts(c_results):
    """The corpus really exercises truncation, and the counts add up."""
    items, results = c_results
    truncated = [r for r in results[77] if r["n_dropped"] > 0]
    assert len(truncated) >= 5
    for r in results[77]:
        assert r["n_tokens"] + r["n_dropped"] == 1 + len(r["raw"])
        assert sum(r["mask"]) == r["n_tokens"]


def test_c_refuses_oversized_text(prog, tmp_path):
    big = b"a" * ((1 << 20) + 1)
    lines = run_prog(prog, tmp_path, ["--batch"], [big, b"ok"])
    assert json.loads(lines[0])["status"] == "invalid_argument"
    assert json.loads(lines[1])["status"] == "ok"


def test_unicode_version_recorded(root):
    header = (root / "shim" / "lowercase_table.h").read_text()
    assert f'CLOOB_LOWER_UNICODE_VERSION "{unicodedata.unidata_version}"' in header, \
        "shim/lowercase_table.h was generated for another Unicode version: rerun tools/gen_lowercase.py"


# ---- the SentencePiece step alone: the shim's plugin path against the Python module --------

BLOCKS = [(0x20, 0x7E), (0x00, 0x1F), (0x7F, 0xFF), (0x100, 0x24F), (0x300, 0x36F), (0x370, 0x3FF),
          (0x400, 0x4FF), (0x2000, 0x206F), (0x2100, 0x218F), (0x2460, 0x24FF), (0x2E80, 0x2FDF),
          (0x3000, 0x30FF), (0x3190, 0x33FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF),
          (0xFB00, 0xFB4F), (0xFE10, 0xFE6F), (0xFF00, 0xFFEF), (0xFFF0, 0xFFFF), (0x1D400, 0x1D7FF),
          (0x1F100, 0x1F1FF), (0x1F300, 0x1FAFF), (0x20000, 0x2A6DF), (0xE0000, 0xE007F)]


def spm_stress_texts(sp):
    rnd = random.Random(20240)
    pieces = [sp.id_to_piece(i).replace("\u2581", " ") for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i))]
    texts = []
    # concatenated vocabulary pieces: many competing segmentations for the Viterbi
    for _ in range(3000):
        texts.append("".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 10))))
    # characters from blocks with many NFKC / nmt rules, spaces and controls
    for _ in range(3000):
        out = []
        for _ in range(rnd.randint(1, 16)):
            lo, hi = rnd.choice(BLOCKS)
            c = rnd.randint(lo, hi)
            if not 0xD800 <= c <= 0xDFFF:
                out.append(chr(c))
            if rnd.random() < 0.2:
                out.append(rnd.choice([" ", "  ", "\u3000", "\t", "\n", "\u200b", "\u00a0"]))
        texts.append("".join(out))
    texts += ["", " ", "\u3000", "a" * 5000, "ア" * 3000, " x " * 1000, "\x00", "\x00a\x00", "[CLS]", "<unk>",
              "e\u0301", "\u1100\u1161\u11a8", "\ufb01\ufb02", "\u2163\u216b", "\u00bd\u2153"]
    return texts


def test_spm_encoder_matches_sentencepiece(prog, sp, tmp_path):
    texts = spm_stress_texts(sp)
    lines = run_prog(prog, tmp_path, ["--spm"], [t.encode() for t in texts])
    assert len(lines) == len(texts)
    bad = []
    for t, line in zip(texts, lines):
        want = sp.encode(t)
        got = [int(x) for x in line.split()]
        if got != want:
            bad.append((t, got, want))
    assert not bad, f"{len(bad)} of {len(texts)} differ, e.g. {bad[:3]}"
