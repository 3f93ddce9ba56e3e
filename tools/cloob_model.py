"""Plain-torch definition of rinna's Japanese CLOOB / CLIP towers (no `transformers` needed).

This module is the single Python definition of the network that tools/export_model.py turns into
TorchScript and that the Python reference pipeline (tests/reference/) runs eagerly. It follows
../shared/model/SPEC.md section 3 exactly:

  * text tower: Hugging Face BertModel (post-LN), additive mask of a large negative number on padded
    keys, token_type 0, explicit positions 0..L-1, feature = text_projection(hidden[:, 0]);
  * vision tower, layout "vit": Hugging Face ViTModel (pre-LN), conv patch embedding with bias, cls
    token, position embeddings, final `layernorm` on all tokens, feature = visual_projection(token 0);
  * vision tower, layout "clip": rinna's `cloob_vision_model` (= CLIP's vision transformer): patch conv
    without bias, `class_embedding`, `pre_layrnorm` after the embeddings, every LayerNorm with eps 1e-5
    (the reference code builds `nn.LayerNorm(dim)` and ignores the config's eps), feature taken BEFORE
    `post_layernorm` (whose weights exist but are unused by get_image_features).

Why the odd module names: every submodule is named after the Hugging Face module it mirrors, so
`CloobModel.state_dict()` keys are exactly the checkpoint's keys (e.g.
`text_model.encoder.layer.3.attention.self.query.weight`). Loading a checkpoint is therefore a strict
key-for-key copy with shape checks (see export_model.load_state_strict), with no renaming table that
could silently drift. BERT's `attention.self` child is registered with setattr() because `self` is a
Python keyword-like name; TorchScript reaches it through getattr(module, "self").

Everything here is scriptable with torch.jit.script in torch 1.13 and 2.x: `encode_image` and
`encode_text` are @torch.jit.export methods that accept any batch size and any text length from 1 to
the model's position table (77 for the service). Inputs are cast to the weights' dtype, so a model
converted with .half() still takes float32 pixels.
"""
import math
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn

# The large negative number added to the attention scores of padded keys. Hugging Face BERT uses
# torch.finfo(dtype).min, which TorchScript cannot evaluate; these are the same constants per dtype.
# exp() of either underflows to exactly 0, so padded keys get exactly zero weight.
_MASK_MIN_FLOAT32 = -3.4028234663852886e38
_MASK_MIN_FLOAT16 = -65504.0

# Activation names as Hugging Face's ACT2FN spells them -> the function computed here.
ACTIVATIONS = {
    "gelu": "gelu",                     # exact erf form 0.5x(1+erf(x/sqrt2))
    "gelu_new": "gelu_tanh",            # tanh approximation (GPT-2 / BERT-original style)
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "quick_gelu": "quick_gelu",         # x * sigmoid(1.702 x), CLIP
    "relu": "relu",
}

VISION_LAYOUTS = ("vit", "clip")


class Activation(nn.Module):
    """The feed-forward activation, chosen by name at construction (a TorchScript constant)."""


    def __init__(self, hf_name: str):
        super().__init__()
        if hf_name not in ACTIVATIONS:
            raise ValueError(f"unsupported hidden_act {hf_name!r} (supported: {', '.join(sorted(ACTIVATIONS))})")
        self.kind = ACTIVATIONS[hf_name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "gelu":
            return F.gelu(x)
        if self.kind == "gelu_tanh":
            return F.gelu(x, approximate="tanh")
        if self.kind == "quick_gelu":
            return x * torch.sigmoid(1.702 * x)
        return F.relu(x)


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, L, H*D] -> [B, H, L, D]."""
    b, n, h = x.shape
    return x.view(b, n, num_heads, h // num_heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H*D]."""
    b, nh, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, nh * d)


# ------------------------------------------------------------------------------------------------
# Small containers whose only job is to give parameters their Hugging Face names.
# ------------------------------------------------------------------------------------------------
class _QKV(nn.Module):
    """`query`, `key`, `value` Linear layers (HF BertSelfAttention / ViTSelfAttention)."""

    def __init__(self, hidden: int, bias: bool = True):
        super().__init__()
        self.query = nn.Linear(hidden, hidden, bias=bias)
        self.key = nn.Linear(hidden, hidden, bias=bias)
        self.value = nn.Linear(hidden, hidden, bias=bias)


class _Dense(nn.Module):
    """A `dense` Linear (HF *Output / *Intermediate modules)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _DenseLN(nn.Module):
    """A `dense` Linear followed (by the caller) by a residual `LayerNorm` (HF BertSelfOutput/BertOutput)."""

    def __init__(self, d_in: int, d_out: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)


# ------------------------------------------------------------------------------------------------
# Text tower: Hugging Face BertModel without pooler.
# ------------------------------------------------------------------------------------------------
class BertAttention(nn.Module):
    """`attention.self.{query,key,value}` + `attention.output.{dense,LayerNorm}`; post-LN residual."""


    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        if hidden % heads != 0:
            raise ValueError(f"text hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        self.num_heads = heads
        self.scale = 1.0 / math.sqrt(hidden // heads)
        setattr(self, "self", _QKV(hidden))  # HF name; `self.self = ...` would read confusingly
        self.output = _DenseLN(hidden, hidden, eps)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        qkv = getattr(self, "self")
        q = _split_heads(qkv.query(x), self.num_heads)
        k = _split_heads(qkv.key(x), self.num_heads)
        v = _split_heads(qkv.value(x), self.num_heads)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale  # HF: (q k^T) / sqrt(d)
        scores = scores + additive_mask                              # [B,1,1,L] broadcast over heads/queries
        ctx = _merge_heads(torch.matmul(torch.softmax(scores, dim=-1), v))
        return self.output.LayerNorm(self.output.dense(ctx) + x)


class BertLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float, act: str):
        super().__init__()
        self.attention = BertAttention(hidden, heads, eps)
        self.intermediate = _Dense(hidden, intermediate)
        self.output = _DenseLN(intermediate, hidden, eps)
        self.act = Activation(act)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, additive_mask)
        h = self.act(self.intermediate.dense(a))
        return self.output.LayerNorm(self.output.dense(h) + a)


class BertEncoder(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.layer = nn.ModuleList([
            BertLayer(cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"],
                      cfg["layer_norm_eps"], cfg["hidden_act"])
            for _ in range(cfg["num_hidden_layers"])
        ])

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, additive_mask)
        return x


class BertEmbeddings(nn.Module):
    """word + position (explicit 0..L-1) + token_type 0, then LayerNorm. The HF buffer `position_ids`
    is deliberately absent: positions are always 0..L-1 for right-padded input."""

    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = ids.size(1)
        x = self.word_embeddings(ids)
        x = x + self.position_embeddings.weight[:n].unsqueeze(0)
        x = x + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class BertTextModel(nn.Module):
    """The `text_model.*` subtree: returns the final hidden states [B, L, H]."""


    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.mask_min_float32 = _MASK_MIN_FLOAT32
        self.mask_min_float16 = _MASK_MIN_FLOAT16
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(ids)
        keep = mask[:, None, None, :].to(x.dtype)
        neg = self.mask_min_float16 if x.dtype == torch.float16 else self.mask_min_float32
        additive_mask = (1.0 - keep) * neg  # HF get_extended_attention_mask
        return self.encoder(x, additive_mask)


# ------------------------------------------------------------------------------------------------
# Vision tower, layout "vit": Hugging Face ViTModel without pooler.
# ------------------------------------------------------------------------------------------------
class ViTSelfAttentionBlock(nn.Module):
    """`attention.attention.{query,key,value}` + `attention.output.dense` (no LayerNorm: pre-LN)."""


    def __init__(self, hidden: int, heads: int, qkv_bias: bool):
        super().__init__()
        if hidden % heads != 0:
            raise ValueError(f"vision hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        self.num_heads = heads
        self.scale = 1.0 / math.sqrt(hidden // heads)
        self.attention = _QKV(hidden, bias=qkv_bias)
        self.output = _Dense(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.attention.query(x), self.num_heads)
        k = _split_heads(self.attention.key(x), self.num_heads)
        v = _split_heads(self.attention.value(x), self.num_heads)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        ctx = _merge_heads(torch.matmul(torch.softmax(scores, dim=-1), v))
        return self.output.dense(ctx)


class ViTLayer(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        h, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.layernorm_before = nn.LayerNorm(h, eps=eps)
        self.attention = ViTSelfAttentionBlock(h, cfg["num_attention_heads"], cfg["qkv_bias"])
        self.layernorm_after = nn.LayerNorm(h, eps=eps)
        self.intermediate = _Dense(h, cfg["intermediate_size"])
        self.output = _Dense(cfg["intermediate_size"], h)
        self.act = Activation(cfg["hidden_act"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.layernorm_before(x))
        return h + self.output.dense(self.act(self.intermediate.dense(self.layernorm_after(h))))


class ViTEncoder(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.layer = nn.ModuleList([ViTLayer(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class _PatchProjection(nn.Module):
    def __init__(self, channels: int, hidden: int, patch: int):
        super().__init__()
        self.projection = nn.Conv2d(channels, hidden, kernel_size=patch, stride=patch, bias=True)


class ViTEmbeddings(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        h = cfg["hidden_size"]
        n_patches = (cfg["image_size"] // cfg["patch_size"]) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, h))
        self.position_embeddings = nn.Parameter(torch.zeros(1, n_patches + 1, h))
        self.patch_embeddings = _PatchProjection(cfg["num_channels"], h, cfg["patch_size"])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embeddings.projection(pixels).flatten(2).transpose(1, 2)  # [B, N, H], row-major
        cls = self.cls_token.expand(x.size(0), -1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embeddings


class ViTVisionModel(nn.Module):
    """The `vision_model.*` subtree of layout "vit": returns the image feature BEFORE projection."""

    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.embeddings = ViTEmbeddings(cfg)
        self.encoder = ViTEncoder(cfg)
        self.layernorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.embeddings(pixels))
        # HF applies `layernorm` to every token; LayerNorm is per token, so token 0 alone is identical.
        return self.layernorm(x[:, 0])


# ------------------------------------------------------------------------------------------------
# Vision tower, layout "clip": rinna's cloob_vision_model (CLIP vision transformer), wrapped once
# more (`vision_model.vision_model.*`) exactly as CLOOBVisionModel is.
# ------------------------------------------------------------------------------------------------
CLIP_LAYOUT_LN_EPS = 1e-5  # nn.LayerNorm(embed_dim) in the reference code, whatever the config says


class ClipAttention(nn.Module):

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        if hidden % heads != 0:
            raise ValueError(f"vision hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        self.num_heads = heads
        self.scale = (hidden // heads) ** -0.5
        self.k_proj = nn.Linear(hidden, hidden)
        self.v_proj = nn.Linear(hidden, hidden)
        self.q_proj = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.q_proj(x) * self.scale, self.num_heads)  # CLIP scales q before q k^T
        k = _split_heads(self.k_proj(x), self.num_heads)
        v = _split_heads(self.v_proj(x), self.num_heads)
        ctx = _merge_heads(torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-1, -2)), dim=-1), v))
        return self.out_proj(ctx)


class ClipMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)
        self.act = Activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        h = cfg["hidden_size"]
        self.self_attn = ClipAttention(h, cfg["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(h, eps=CLIP_LAYOUT_LN_EPS)
        self.mlp = ClipMLP(h, cfg["intermediate_size"], cfg["hidden_act"])
        self.layer_norm2 = nn.LayerNorm(h, eps=CLIP_LAYOUT_LN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.layers = nn.ModuleList([ClipEncoderLayer(cfg) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ClipVisionEmbeddings(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        h = cfg["hidden_size"]
        n_patches = (cfg["image_size"] // cfg["patch_size"]) ** 2
        self.class_embedding = nn.Parameter(torch.zeros(h))
        self.patch_embedding = nn.Conv2d(cfg["num_channels"], h, kernel_size=cfg["patch_size"],
                                         stride=cfg["patch_size"], bias=False)
        self.position_embedding = nn.Embedding(n_patches + 1, h)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(pixels).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.size(0), 1, -1)
        return torch.cat([cls, x], dim=1) + self.position_embedding.weight.unsqueeze(0)


class ClipVisionTransformer(nn.Module):
    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        h = cfg["hidden_size"]
        self.embeddings = ClipVisionEmbeddings(cfg)
        self.pre_layrnorm = nn.LayerNorm(h, eps=CLIP_LAYOUT_LN_EPS)   # sic: the reference's spelling
        self.encoder = ClipEncoder(cfg)
        self.post_layernorm = nn.LayerNorm(h, eps=CLIP_LAYOUT_LN_EPS)  # loaded, unused for features

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.encoder(self.pre_layrnorm(self.embeddings(pixels)))
        # get_image_features takes last_hidden_state[:, 0] - BEFORE post_layernorm.
        return x[:, 0]


class ClipVisionModel(nn.Module):
    """The `vision_model.*` subtree of layout "clip" (CLOOBVisionModel wraps the transformer)."""

    def __init__(self, cfg: Dict[str, Any]):
        super().__init__()
        self.vision_model = ClipVisionTransformer(cfg)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixels)


# ------------------------------------------------------------------------------------------------
# The whole model.
# ------------------------------------------------------------------------------------------------
class CloobModel(nn.Module):
    """Both towers and projections. `architecture` is the dict stored in cloob.json (see
    normalize_architecture); state_dict() keys equal the Hugging Face checkpoint's keys."""


    def __init__(self, architecture: Dict[str, Any]):
        super().__init__()
        arch = normalize_architecture(architecture)
        vis, txt = arch["vision"], arch["text"]
        if arch["vision_layout"] == "vit":
            self.vision_model = ViTVisionModel(vis)
        else:
            self.vision_model = ClipVisionModel(vis)
        self.text_model = BertTextModel(txt)
        self.visual_projection = nn.Linear(vis["hidden_size"], arch["projection_dim"], bias=False)
        self.text_projection = nn.Linear(txt["hidden_size"], arch["projection_dim"], bias=False)
        self.image_size = vis["image_size"]
        self.num_channels = vis["num_channels"]
        self.max_positions = txt["max_position_embeddings"]
        self.vocab_size = txt["vocab_size"]

    @torch.jit.export
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, S, S] normalized float (any float dtype) -> unnormalized features [B, D]."""
        if pixels.dim() != 4 or pixels.size(1) != self.num_channels or pixels.size(2) != self.image_size \
                or pixels.size(3) != self.image_size:
            raise ValueError("encode_image: expected pixels of shape [B, " + str(self.num_channels) + ", "
                             + str(self.image_size) + ", " + str(self.image_size) + "], got "
                             + str(pixels.shape))
        w = self.visual_projection.weight
        return self.visual_projection(self.vision_model(pixels.to(w.dtype)))

    @torch.jit.export
    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask [B, L] integer (L in 1..max_position_embeddings; mask 1 = real token, 0 = pad,
        padding on the right, [CLS] first) -> unnormalized features [B, D] from token 0."""
        if ids.dim() != 2 or mask.shape != ids.shape:
            raise ValueError("encode_text: ids and mask must both be [B, L]; got " + str(ids.shape)
                             + " and " + str(mask.shape))
        if ids.size(1) < 1 or ids.size(1) > self.max_positions:
            raise ValueError("encode_text: sequence length " + str(ids.size(1)) + " is outside 1.."
                             + str(self.max_positions))
        ids = ids.to(torch.long)
        if ids.numel() > 0:
            if bool(ids.min() < 0) or bool(ids.max() >= self.vocab_size):
                raise ValueError("encode_text: token id outside 0.." + str(self.vocab_size - 1))
        hidden = self.text_model(ids, mask)
        return self.text_projection(hidden[:, 0])

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # torch.jit.script compiles forward; make it the image path so the module is usable as-is.
        return self.encode_image(pixels)


# ------------------------------------------------------------------------------------------------
# Architecture dictionaries.
# ------------------------------------------------------------------------------------------------
_TEXT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
              "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
              "hidden_act")
_VISION_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "image_size", "patch_size", "num_channels", "layer_norm_eps", "hidden_act", "qkv_bias")


def normalize_architecture(arch: Dict[str, Any]) -> Dict[str, Any]:
    """Validates an architecture dict and returns a clean copy with exactly the known fields:
    {"vision_layout": "vit"|"clip", "projection_dim": int, "text": {...}, "vision": {...}}.
    Raises ValueError naming the offending field."""
    if arch.get("vision_layout") not in VISION_LAYOUTS:
        raise ValueError(f"architecture.vision_layout must be one of {VISION_LAYOUTS}, got {arch.get('vision_layout')!r}")
    out: Dict[str, Any] = {"vision_layout": arch["vision_layout"]}
    pd = arch.get("projection_dim")
    if not isinstance(pd, int) or isinstance(pd, bool) or pd < 1:
        raise ValueError(f"architecture.projection_dim must be a positive integer, got {pd!r}")
    out["projection_dim"] = pd
    for tower, keys in (("text", _TEXT_KEYS), ("vision", _VISION_KEYS)):
        src = arch.get(tower)
        if not isinstance(src, dict):
            raise ValueError(f"architecture.{tower} must be an object")
        dst: Dict[str, Any] = {}
        for k in keys:
            if k not in src:
                raise ValueError(f"architecture.{tower}.{k} is missing")
            v = src[k]
            if k == "hidden_act":
                if v not in ACTIVATIONS:
                    raise ValueError(f"architecture.{tower}.hidden_act {v!r} is not supported "
                                     f"(supported: {', '.join(sorted(ACTIVATIONS))})")
            elif k == "layer_norm_eps":
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 < v < 1):
                    raise ValueError(f"architecture.{tower}.layer_norm_eps must be in (0, 1), got {v!r}")
                v = float(v)
            elif k == "qkv_bias":
                if not isinstance(v, bool):
                    raise ValueError(f"architecture.{tower}.qkv_bias must be a boolean, got {v!r}")
            else:
                if not isinstance(v, int) or isinstance(v, bool) or v < 1 or v > 1_000_000:
                    raise ValueError(f"architecture.{tower}.{k} must be a positive integer, got {v!r}")
            dst[k] = v
        out[tower] = dst
    v = out["vision"]
    if v["image_size"] % v["patch_size"] != 0:
        raise ValueError(f"architecture.vision.image_size {v['image_size']} is not a multiple of "
                         f"patch_size {v['patch_size']}")
    return out


def tiny_architecture(vision_layout: str = "vit") -> Dict[str, Any]:
    """The small random test model: real vocabulary (fits the real tokenizer), 224x224 input."""
    return {
        "vision_layout": vision_layout,
        "projection_dim": 16,
        "text": {"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "intermediate_size": 64, "max_position_embeddings": 80, "type_vocab_size": 2,
                 "layer_norm_eps": 1e-12, "hidden_act": "gelu"},
        "vision": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                   "image_size": 224, "patch_size": 16, "num_channels": 3,
                   "layer_norm_eps": 1e-12 if vision_layout == "vit" else 1e-5,
                   "hidden_act": "gelu" if vision_layout == "vit" else "quick_gelu", "qkv_bias": True},
    }


def full_architecture(vision_layout: str = "vit") -> Dict[str, Any]:
    """rinna/japanese-cloob-vit-b-16's sizes (SPEC.md section 1): ViT-B/16 + BERT-base, 512 projection."""
    return {
        "vision_layout": vision_layout,
        "projection_dim": 512,
        "text": {"vocab_size": 32000, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
                 "layer_norm_eps": 1e-12, "hidden_act": "gelu"},
        "vision": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "intermediate_size": 3072, "image_size": 224, "patch_size": 16, "num_channels": 3,
                   "layer_norm_eps": 1e-12 if vision_layout == "vit" else 1e-5,
                   "hidden_act": "gelu" if vision_layout == "vit" else "quick_gelu", "qkv_bias": True},
    }


def build_model(architecture: Dict[str, Any]) -> CloobModel:
    """An eager CloobModel in eval mode (weights uninitialised-but-allocated: load or randomize them)."""
    return CloobModel(architecture).eval()


@torch.no_grad()
def randomize_(model: nn.Module, seed: int, std: float = 0.02) -> nn.Module:
    """Deterministic random weights: every tensor N(0, std) except LayerNorm weights (1) and biases (0).

    Keys are visited in sorted order with one seeded generator, so the result depends only on the
    architecture and the seed (not on module construction order or the torch version's default RNG
    consumption)."""
    gen = torch.Generator().manual_seed(int(seed))
    ln_params = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.LayerNorm):
            ln_params.add(f"{name}.weight")
            ln_params.add(f"{name}.bias")
    params = dict(model.named_parameters())
    for name in sorted(params):
        p = params[name]
        if name in ln_params:
            p.fill_(1.0 if name.endswith(".weight") else 0.0)
        elif name.endswith(".bias"):
            p.zero_()
        else:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std)
    return model
