"""The video tracker's host-side constants, read from the official model and builders.

The runtime's video session (`runtime/src/video/`) implements the official tracker's
host logic (`Sam3TrackerPredictor`); every number it needs comes from here into the
bundle's `tracker` block (docs/design.md), so nothing is duplicated by hand.
"""

from __future__ import annotations

import inspect


def _default(fn, name):
    return inspect.signature(fn).parameters[name].default


def tracker_block(model) -> dict:
    from sam3 import model_builder
    from sam3.model.sam3_video_base import Sam3VideoBase

    trk = model.inst_interactive_predictor.model
    dec = trk.sam_mask_decoder
    cfg = model.sam3_tvm_config
    return {
        "image_size": trk.image_size,
        "low_res_mask_size": trk.low_res_mask_size,
        "input_mask_size": trk.input_mask_size,
        "hidden_dim": trk.hidden_dim,
        "mem_dim": trk.mem_dim,
        "num_maskmem": trk.num_maskmem,
        "max_cond_frames_in_attn": trk.max_cond_frames_in_attn,
        "keep_first_cond_frame": trk.keep_first_cond_frame,
        "max_obj_ptrs_in_encoder": trk.max_obj_ptrs_in_encoder,
        "max_memories": cfg.max_memories,
        "max_pointers": cfg.max_pointers,
        "pointer_slots": cfg.pointer_slots,  # the memory attention's pointer inputs
        # the image model's tracker is built without memory selection; the video model
        # (build_sam3_video_model) passes apply_temporal_disambiguation, default True
        "use_memory_selection": bool(_default(model_builder.build_sam3_video_model,
                                              "apply_temporal_disambiguation")),
        "mf_threshold": trk.mf_threshold,
        "memory_temporal_stride_for_eval": trk.memory_temporal_stride_for_eval,
        "multimask_output_in_sam": trk.multimask_output_in_sam,
        "multimask_min_pt_num": trk.multimask_min_pt_num,
        "multimask_max_pt_num": trk.multimask_max_pt_num,
        "multimask_output_for_tracking": trk.multimask_output_for_tracking,
        "dynamic_multimask_via_stability": dec.dynamic_multimask_via_stability,
        "dynamic_multimask_stability_delta": dec.dynamic_multimask_stability_delta,
        "dynamic_multimask_stability_thresh": dec.dynamic_multimask_stability_thresh,
        "use_multimask_token_for_obj_ptr": dec.use_multimask_token_for_obj_ptr,
        "sigmoid_scale_for_mem_enc": trk.sigmoid_scale_for_mem_enc,
        "sigmoid_bias_for_mem_enc": trk.sigmoid_bias_for_mem_enc,
        "non_overlap_masks_for_mem_enc": trk.non_overlap_masks_for_mem_enc,
        "max_point_num_in_prompt_enc": trk.max_point_num_in_prompt_enc,
        "clear_non_cond_mem_around_input": trk.clear_non_cond_mem_around_input,
        "clear_non_cond_mem_for_multi_obj": trk.clear_non_cond_mem_for_multi_obj,
        "add_all_frames_to_correct_as_cond": trk.add_all_frames_to_correct_as_cond,
        "iter_use_prev_mask_pred": trk.iter_use_prev_mask_pred,
        # output post-processing of the video predictor (Sam3VideoBase): hole filling
        # on the low-res masks of every tracked object
        "output_fill_hole_area": _default(Sam3VideoBase.__init__, "fill_hole_area"),
    }


def detector_block() -> dict:
    """Concept tracking's thresholds and switches (the bundle's `detector` block), as the
    official video model has them (model/concept_config.py reads them from a constructed
    model); the runtime's defaults, each overridable by the user."""
    from sam3_tvm.model.concept_config import THRESHOLDS

    return {k: (v if isinstance(v, (bool, int)) else float(v)) for k, v in THRESHOLDS.items()}
