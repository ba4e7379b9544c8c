"""transformers' SAM 3 at the sizes of our `tiny` config, with random weights.

Used by test_hf_checkpoint.py as a second, independent implementation: the model is
built by `transformers` (`Sam3VideoModel`: detector + tracker + tracker neck, the layout
of the published model.safetensors), every parameter randomised (so no weight that a
wrong mapping would swap is an identity or zero), saved, and compiled by us.
"""

from __future__ import annotations

# the sizes of sam3_tvm.model.builder's tiny overrides
IMAGE, PATCH, VIT, D, TEXT, MEM = 336, 14, 64, 32, 64, 16


def tiny_config():
    from transformers import Sam3VideoConfig

    g = IMAGE // PATCH
    vision = dict(
        backbone_config=dict(model_type="sam3_vit_model", hidden_size=VIT, intermediate_size=int(VIT * 4.625), num_hidden_layers=2,
                                 num_attention_heads=2, image_size=IMAGE, patch_size=PATCH, window_size=12,
                                 global_attn_indexes=[1], pretrain_image_size=168, layer_norm_eps=1e-5),
            fpn_hidden_size=D, backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]])
    detector = dict(
        vision_config=vision,
        text_config=dict(vocab_size=49408, hidden_size=TEXT, intermediate_size=4 * TEXT, projection_dim=512,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32,
                         hidden_act="gelu"),
        geometry_encoder_config=dict(hidden_size=D, num_layers=1, intermediate_size=2 * D),
        detr_encoder_config=dict(hidden_size=D, num_layers=2, intermediate_size=2 * D),
        detr_decoder_config=dict(hidden_size=D, num_layers=2, num_queries=20, intermediate_size=2 * D),
        mask_decoder_config=dict(hidden_size=D),
    )
    tracker = dict(
        vision_config=dict(vision, model_type="sam3_vision_model"),
        prompt_encoder_config=dict(hidden_size=D, image_size=IMAGE, patch_size=PATCH),
        mask_decoder_config=dict(hidden_size=D),
        memory_attention_hidden_size=D, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=2 * D, memory_attention_rope_feat_sizes=[g, g],
        memory_encoder_hidden_size=D, memory_encoder_output_channels=MEM,
        mask_downsampler_embed_dim=D, memory_fuser_embed_dim=D, memory_fuser_intermediate_dim=4 * D,
        image_size=IMAGE,
    )
    return Sam3VideoConfig(detector_config=detector, tracker_config=tracker)


def build(seed: int = 0):
    """The transformers Sam3VideoModel, eval mode, every parameter and persistent
    buffer drawn at random (seeded)."""
    import torch
    from transformers import Sam3VideoModel
    from transformers.models.sam3_tracker_video import modeling_sam3_tracker_video as mtv

    # transformers builds the memory attention's cross-attention with kv_in_dim=64 written
    # out (the full model's memory width) instead of reading the config; substitute the
    # tiny width while building
    rope_attention = mtv.Sam3TrackerVideoRoPEAttention
    original_init = rope_attention.__init__

    def init(self, config, *args, kv_in_dim=None, **kwargs):
        original_init(self, config, *args, kv_in_dim=MEM if kv_in_dim == 64 else kv_in_dim, **kwargs)

    torch.manual_seed(seed)
    rope_attention.__init__ = init
    try:
        model = Sam3VideoModel(tiny_config()).eval()
    finally:
        rope_attention.__init__ = original_init
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight",
                              "norm4.weight", "_norm.weight", "layer_norm.weight")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                scale = 0.5 / max(1, p[0].numel() if p.dim() > 1 else 1) ** 0.5 if p.dim() > 1 else 0.1
                p.copy_(torch.randn(p.shape, generator=g) * scale)
    # the two copies of the SAM positional encoding are one tensor officially
    pe = model.tracker_model.shared_image_embedding.positional_embedding
    model.tracker_model.prompt_encoder.shared_embedding.positional_embedding.copy_(pe)
    return model
