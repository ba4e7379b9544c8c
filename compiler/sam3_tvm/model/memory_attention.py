"""The tracker's memory attention: the current frame's features attend to a bank of
spatial memories and object pointers (`Sam3TrackerBase._prepare_memory_conditioned_features`
after the memory selection, then `TransformerEncoderCrossAttention.forward`).

Shapes are what the official call builds, with two changes that keep the answer:
- The number of spatial memories is a symbolic dimension `num_mem` (1..max); every
  memory has G*G keys. The official `prompt` concatenates the memories in selection
  order; key order does not change attention, only summation order.
- Object pointers come in a fixed bucket of `pointer_slots` slots with a validity flag.
  Unused slots get a -1e30 score bias, so their softmax weight is exactly 0 (every row
  has at least G*G valid keys). The official code has no padding; with all slots valid
  it is the same computation.
- Where attention is not fused (GPU builds), the cross-attention's softmax runs over the
  memory keys and the pointer keys without concatenating them (`_attend_two_parts`), so
  the large symbolic part keeps a length the schedules can tile and block. CPU builds
  concatenate them for the fused kernel (lowering/attention.py), the pointer bias as a
  per-key term.

The RoPE of `RoPEAttention` is applied in real arithmetic (`rope.rotate_pairs`, TVM has
no complex dtype), to the queries and to the spatial-memory keys only (the official
`num_k_exclude_rope` = the pointer tokens), with the G*G frequencies repeated for every
memory (`rope_k_repeat`). The projections, norms and MLP are the official modules.
"""

from __future__ import annotations

import torch
from torch import nn

from sam3_tvm.model.rope import rotate_pairs

MASKED_SCORE = -1e30


def memory_limits(tracker) -> tuple[int, int]:
    """(max spatial memories, max object pointers) one frame can attend to: up to
    `max_cond_frames_in_attn` conditioning frames plus `num_maskmem - 1` recent ones;
    pointers from the selected conditioning frames plus `max_obj_ptrs_in_encoder - 1`
    recent frames."""
    cond = tracker.max_cond_frames_in_attn
    if cond < 1:
        raise ValueError("max_cond_frames_in_attn = -1 (no limit) has no static bound")
    return cond + tracker.num_maskmem - 1, cond + tracker.max_obj_ptrs_in_encoder - 1


def _sine_pe(pos: torch.Tensor, dim: int) -> torch.Tensor:
    from sam3.model.sam3_tracker_utils import get_1d_sine_pe

    return get_1d_sine_pe(pos, dim=dim)


def _attend(q, k, v):
    """Attention of q [1,Lq,C] over k, v [1,Lk,C] (one head, scale C^-0.5). Through
    `scaled_dot_product_attention`, which the export turns into the fused CPU kernel, or
    elsewhere into query blocks within the export's score budget (export.py)."""
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v)


def _attend_two_parts(q, k_mem, v_mem, k_ptr, v_ptr, ptr_bias, max_keys):
    """Softmax attention of q over the concatenation [k_mem; k_ptr] (values [v_mem; v_ptr]),
    computed without concatenating: one row max and one normaliser over both parts, then
    (e_mem @ v_mem + e_ptr @ v_ptr) / sum. The spatial-memory part keeps its symbolic
    length num_mem*G*G, a multiple of G*G, which the CPU schedules can block; the
    pointer part is small and static.

    Exported for the fused CPU kernel (export.fused_attention_enabled), the two parts are
    one key sequence instead, with the pointer bias as a per-key term: the kernel walks
    the keys in blocks whatever their number, and no score matrix exists."""
    import torch.nn.functional as F

    from sam3_tvm.frontend.export import fused_attention_enabled, query_blocks

    if fused_attention_enabled():
        k, v = torch.cat([k_mem, k_ptr], dim=1), torch.cat([v_mem, v_ptr], dim=1)
        key_bias = torch.cat([k_mem.new_zeros(k_mem.shape[1]), ptr_bias.to(k_mem.dtype)])
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias[None, None])
    scale = q.shape[-1] ** -0.5
    k_mem_t, k_ptr_t = k_mem.transpose(-2, -1), k_ptr.transpose(-2, -1)

    def block(qb):
        qs = qb * scale
        s_mem = qs @ k_mem_t
        s_ptr = qs @ k_ptr_t + ptr_bias
        m = torch.maximum(s_mem.amax(dim=-1, keepdim=True), s_ptr.amax(dim=-1, keepdim=True))
        e_mem, e_ptr = torch.exp(s_mem - m), torch.exp(s_ptr - m)
        total = e_mem.sum(dim=-1, keepdim=True) + e_ptr.sum(dim=-1, keepdim=True)
        return (e_mem @ v_mem + e_ptr @ v_ptr) / total

    n = query_blocks(q.shape, max_keys)
    if n == 1:
        return block(q)
    return torch.cat([block(qb) for qb in q.chunk(n, dim=-2)], dim=-2)


class MemoryAttention(nn.Module):
    """src [1,C,G,G] (tracker neck's lowest level), memory [num_mem,Cm,G,G] (spatial
    memories, as stored: bf16 values in fp32), memory_tpos [num_mem] int64 (index into
    `maskmem_tpos_enc`: num_maskmem-1 for a selected conditioning frame, else
    num_maskmem-1-t_pos), ptrs [P,C] (object pointers), ptr_pos [P] (relative frame
    distance / (min(num_frames, max_obj_ptrs_in_encoder) - 1)), ptr_valid [P] (1 = used)
    -> pix_feat_with_mem [1,C,G,G]."""

    def __init__(self, model):
        super().__init__()
        trk = model.inst_interactive_predictor.model
        enc = trk.transformer.encoder
        for layer in enc.layers:
            # the flags this wrapper hard-codes, as model_builder._create_tracker_transformer sets them
            if (layer.pos_enc_at_attn or layer.pos_enc_at_cross_attn_queries
                    or not layer.pos_enc_at_cross_attn_keys or layer.cross_attention_first
                    or not layer.pre_norm or layer.self_attn.num_heads != 1
                    or layer.cross_attn_image.num_heads != 1):
                raise ValueError("unexpected tracker memory-attention configuration")
        if not enc.pos_enc_at_input:
            raise ValueError("unexpected tracker memory-attention configuration")
        self.encoder = enc
        self.src_pos_enc = model.backbone.vision_backbone.position_encoding
        self.mem_pos_enc = trk.maskmem_backbone.position_encoding
        self.maskmem_tpos_enc = trk.maskmem_tpos_enc
        self.obj_ptr_tpos_proj = trk.obj_ptr_tpos_proj
        self.hidden_dim = trk.hidden_dim
        cfg = model.sam3_tvm_config
        self.max_keys = cfg.max_memories * cfg.grid ** 2 + cfg.pointer_slots * (trk.hidden_dim // trk.mem_dim)
        self.mem_dim = trk.mem_dim
        freqs = enc.layers[0].self_attn.freqs_cis  # [G*G, C/2] complex, same for every layer
        self.register_buffer("rope_cos", freqs.real.float().cpu().contiguous(), persistent=False)
        self.register_buffer("rope_sin", freqs.imag.float().cpu().contiguous(), persistent=False)

    def _rope(self, x):  # x [..., G*G, C]
        return rotate_pairs(x, self.rope_cos, self.rope_sin)

    def _self_attention(self, attn, x):
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
        return attn.out_proj(_attend(self._rope(q), self._rope(k), v))

    def _cross_attention(self, attn, x, mem, mem_pos, ptr, ptr_pos, ptr_bias):
        # keys are `memory + pos`, values `memory` (pos_enc_at_cross_attn_keys); projecting
        # the spatial memories and the pointer tokens apart equals projecting their concat
        q = self._rope(attn.q_proj(x))
        hw = self.rope_cos.shape[0]
        k_mem = attn.k_proj(mem + mem_pos)
        k_mem = self._rope(k_mem.reshape(-1, hw, k_mem.shape[-1])).reshape(k_mem.shape)
        out = _attend_two_parts(q, k_mem, attn.v_proj(mem), attn.k_proj(ptr + ptr_pos),
                                attn.v_proj(ptr), ptr_bias, self.max_keys)
        return attn.out_proj(out)

    def forward(self, src, memory, memory_tpos, ptrs, ptr_pos, ptr_valid):
        C, Cm = self.hidden_dim, self.mem_dim
        split = C // Cm
        # current frame, batch-first [1, HW, C], + 0.1 * pos (pos_enc_at_input)
        src_pos = self.src_pos_enc(src).to(src.dtype)
        x = src.flatten(2).transpose(1, 2)
        x = x + 0.1 * src_pos.flatten(2).transpose(1, 2)
        # spatial memories [1, num_mem*HW, Cm] and their position: sine + temporal slot
        n = memory.shape[0]
        mem = memory.flatten(2).transpose(1, 2)
        mem_pos = self.mem_pos_enc(memory[:1]).to(memory.dtype).flatten(2).transpose(1, 2)
        mem_pos = mem_pos + self.maskmem_tpos_enc[memory_tpos].view(n, 1, Cm)
        mem = mem.reshape(1, -1, Cm)
        mem_pos = mem_pos.reshape(1, -1, Cm)
        # object pointers: each C-vector split into C/Cm tokens, position repeated per token
        ptr_tok = ptrs.reshape(1, -1, Cm)
        ptr_tok_pos = self.obj_ptr_tpos_proj(_sine_pe(ptr_pos, C)).repeat_interleave(split, dim=0)
        ptr_bias = torch.where(ptr_valid.repeat_interleave(split, dim=0) > 0.5,
                               torch.zeros_like(ptr_pos).repeat_interleave(split, dim=0),
                               torch.full_like(ptr_pos, MASKED_SCORE).repeat_interleave(split, dim=0))
        ptr_tok_pos = ptr_tok_pos[None]
        for layer in self.encoder.layers:
            x = x + self._self_attention(layer.self_attn, layer.norm1(x))
            x = x + self._cross_attention(layer.cross_attn_image, layer.norm2(x), mem, mem_pos,
                                          ptr_tok, ptr_tok_pos, ptr_bias)
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        out = self.encoder.norm(x)
        return out.transpose(1, 2).reshape(src.shape)


def official_memory_attention(model, src, memory, memory_tpos, ptrs, ptr_pos, ptr_valid):
    """The same inputs through the official code path, for parity checks: the prompt and
    its position built as `_prepare_memory_conditioned_features` builds them (memories in
    the given order, only the valid pointers, `_get_tpos_enc` after its division), then
    `transformer.encoder` with its complex RoPE and PyTorch's attention."""
    from sam3.model.sam3_tracker_utils import get_1d_sine_pe

    trk = model.inst_interactive_predictor.model
    C, Cm = trk.hidden_dim, trk.mem_dim
    G = src.shape[-1]
    pos_enc = model.backbone.vision_backbone.position_encoding
    src_pos = pos_enc(src).to(src.dtype)
    mem_pos_spatial = trk.maskmem_backbone.position_encoding(memory[:1]).to(memory.dtype)
    prompt, prompt_pos = [], []
    for i in range(memory.shape[0]):
        prompt.append(memory[i:i + 1].flatten(2).permute(2, 0, 1))
        enc = mem_pos_spatial.flatten(2).permute(2, 0, 1)
        prompt_pos.append(enc + trk.maskmem_tpos_enc[int(memory_tpos[i])])
    valid = ptr_valid > 0.5
    num_ptr_tokens = 0
    if bool(valid.any()):
        obj_ptrs = ptrs[valid][:, None]  # [P, B=1, C]
        obj_pos = trk.obj_ptr_tpos_proj(get_1d_sine_pe(ptr_pos[valid], dim=C))
        obj_pos = obj_pos.unsqueeze(1)
        obj_ptrs = obj_ptrs.reshape(-1, 1, C // Cm, Cm).permute(0, 2, 1, 3).flatten(0, 1)
        obj_pos = obj_pos.repeat_interleave(C // Cm, dim=0)
        prompt.append(obj_ptrs)
        prompt_pos.append(obj_pos)
        num_ptr_tokens = obj_ptrs.shape[0]
    out = trk.transformer.encoder(
        src=[src.flatten(2).permute(2, 0, 1)], src_key_padding_mask=[None],
        src_pos=[src_pos.flatten(2).permute(2, 0, 1)], prompt=torch.cat(prompt, dim=0),
        prompt_pos=torch.cat(prompt_pos, dim=0), prompt_key_padding_mask=None,
        feat_sizes=[(G, G)], num_obj_ptr_tokens=num_ptr_tokens)
    return out["memory"].permute(1, 2, 0).reshape(src.shape)
