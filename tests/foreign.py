"""Models dropkit did not write, for the tools' tests: tiny transformers configs built
offline, and small faithful copies of timm's dropout patterns.

timm is not a dependency (its torchvision does not import beside the CPU torch here),
so ``drop_path``/``DropPath``, ``Attention`` (with ``fused_attn``), ``Mlp`` and
``Block`` are copied from timm's ``layers/drop.py``, ``layers/attention.py``,
``layers/mlp.py`` and ``models/vision_transformer.py``, cut to what matters here: where
the rate lives and which ``training`` flag gates each draw.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# -- timm's patterns ------------------------------------------------------------------


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False,
              scale_by_keep: bool = True) -> torch.Tensor:
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)  # work with diff dim tensors, not just 2D
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):
    """timm's: the rate in ``drop_prob``, a per-sample draw with ``bernoulli_``."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)


class Attention(nn.Module):
    """timm's: the fused path reads ``attn_drop.p`` gated on the attention's own flag."""

    def __init__(self, dim: int, num_heads: int = 2, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, fused_attn: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, dim * 3)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            q = q * self.scale
            attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
            attn = self.attn_drop(attn)
            x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """timm's ViT block: ``DropPath(p) if p > 0. else nn.Identity()``."""

    def __init__(self, dim: int = 8, num_heads: int = 2, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, drop_path: float = 0.0, fused_attn: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, attn_drop, proj_drop, fused_attn)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 2 * dim, proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class TokenBatchNorm(nn.Module):
    """BatchNorm over the channels of ``(B, N, C)`` tokens: must stay in eval in MC."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.transpose(1, 2)).transpose(1, 2)


def timm_model(attn_drop: float = 0.5, proj_drop: float = 0.0, drop_path: float = 0.0,
               fused_attn: bool = True) -> nn.Module:
    """A BatchNorm stem, then a timm block, then a head; in eval, stats trained."""
    torch.manual_seed(0)
    m = nn.Sequential(TokenBatchNorm(8),
                      Block(8, 2, attn_drop, proj_drop, drop_path, fused_attn),
                      nn.Flatten(), nn.Linear(8 * 5, 3))
    m.train()
    with torch.no_grad():
        for _ in range(2):  # running statistics away from their defaults
            m(torch.randn(4, 5, 8))
    return m.eval()


def tokens(seed: int = 0) -> torch.Tensor:
    return torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(seed))  # (B, N, C)


# -- hand-written functional dropout --------------------------------------------------


class FunctionalDropout(nn.Module):
    """A layer that calls ``F.dropout`` itself, its rate where no registry looks (as good
    as written in the code); with ``gated=False`` it leaves out ``training=``, so torch's
    default keeps it on in eval."""

    def __init__(self, width: int, p: float, gated: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.p_in_code, self.gated = p, gated  # not a RATE_ATTRIBUTES name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return F.dropout(self.fc(x), self.p_in_code, self.training)
        return F.dropout(self.fc(x), self.p_in_code)


# -- transformers, tiny configs, no hub -------------------------------------------------


def bert(attn: str = "sdpa", attention: float = 0.5, hidden: float = 0.0) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=3,
                     attention_probs_dropout_prob=attention, hidden_dropout_prob=hidden,
                     attn_implementation=attn)
    return BertForSequenceClassification(cfg).eval()


def llama(attention: float = 0.5, attn: str = "sdpa") -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                      attention_dropout=attention, bos_token_id=0, eos_token_id=1,
                      attn_implementation=attn)
    return LlamaForCausalLM(cfg).eval()


def gpt2(attn: float = 0.5, resid: float = 0.0, embd: float = 0.0) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50, n_embd=16, n_layer=2, n_head=2, n_positions=32,
                     attn_pdrop=attn, resid_pdrop=resid, embd_pdrop=embd,
                     bos_token_id=0, eos_token_id=1)
    return GPT2LMHeadModel(cfg).eval()


def vit(attention: float = 0.2, hidden: float = 0.0) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    cfg = ViTConfig(image_size=8, patch_size=4, num_channels=3, hidden_size=16,
                    num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                    hidden_dropout_prob=hidden, attention_probs_dropout_prob=attention,
                    num_labels=3)
    return ViTForImageClassification(cfg).eval()


def text_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(2, 50, (4, 7), generator=g),
            "attention_mask": torch.ones(4, 7, dtype=torch.long)}


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


# Families with a pattern BERT, Llama, GPT-2 and ViT lack (every dropout-like setting
# above 0): a left-padded causal LM, a rate stored but read from the config, MoE router
# jitter, encoder LayerDrop read from the config, relative-position attention, fused
# attention that reads a child's rate, and a two-tower model whose outputs couple rows.


def gpt_neox(p: float = 0.3) -> nn.Module:
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        attention_dropout=p, hidden_dropout=p, bos_token_id=0, eos_token_id=1)
    return GPTNeoXForCausalLM(cfg).eval()


def falcon(p: float = 0.3) -> nn.Module:
    """Its layers store ``hidden_dropout`` but their forward reads the config's."""
    from transformers import FalconConfig, FalconForCausalLM

    torch.manual_seed(0)
    cfg = FalconConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                       attention_dropout=p, hidden_dropout=p, bos_token_id=0, eos_token_id=1)
    return FalconForCausalLM(cfg).eval()


def mixtral(p: float = 0.3, jitter: float = 0.3) -> nn.Module:
    """Router jitter: ``uniform_`` on the MoE input, a rate no attribute list names."""
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    cfg = MixtralConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                        attention_dropout=p, router_jitter_noise=jitter, num_local_experts=4,
                        num_experts_per_tok=2, bos_token_id=0, eos_token_id=1)
    return MixtralForCausalLM(cfg).eval()


def electra(p: float = 0.3) -> nn.Module:
    from transformers import ElectraConfig, ElectraForSequenceClassification

    torch.manual_seed(0)
    cfg = ElectraConfig(vocab_size=50, embedding_size=16, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        hidden_dropout_prob=p, attention_probs_dropout_prob=p, num_labels=3)
    return ElectraForSequenceClassification(cfg).eval()


def deberta(hidden: float = 0.0, attention: float = 0.3) -> nn.Module:
    """Relative-position attention; at ``hidden`` 0 ``pos_dropout`` returns a weight."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    cfg = DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=32,
                          max_position_embeddings=32, hidden_dropout_prob=hidden,
                          attention_probs_dropout_prob=attention, relative_attention=True,
                          pos_att_type=["p2c", "c2p"], num_labels=3)
    return DebertaV2ForSequenceClassification(cfg).eval()


def wav2vec2(p: float = 0.3) -> nn.Module:
    """Encoder LayerDrop: ``torch.rand`` against ``self.config.layerdrop``."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    cfg = Wav2Vec2Config(vocab_size=12, hidden_size=16, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=32, conv_dim=(8, 8),
                         conv_stride=(4, 4), conv_kernel=(8, 4), num_conv_pos_embeddings=4,
                         num_conv_pos_embedding_groups=2, layerdrop=p, hidden_dropout=p,
                         attention_dropout=p, activation_dropout=p, feat_proj_dropout=p,
                         final_dropout=p, mask_time_prob=0.0)
    return Wav2Vec2ForCTC(cfg).eval()


def clip(p: float = 0.3) -> nn.Module:
    """Two towers: every image's logits hold one column per text of the batch."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    text = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, attention_dropout=p,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    vision = dict(image_size=8, patch_size=4, hidden_size=16, intermediate_size=32,
                  num_hidden_layers=2, num_attention_heads=2, attention_dropout=p)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision,
                                projection_dim=8)).eval()


def left_padded_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Row 0 has three padding tokens on the left, row 1 one."""
    batch = text_batch(seed)
    batch["attention_mask"][0, :3] = 0
    batch["attention_mask"][1, :1] = 0
    return batch


def image_text_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    return {"input_ids": text_batch(seed)["input_ids"][:2], "pixel_values": images(seed)}


def audio(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 200, generator=torch.Generator().manual_seed(seed))
