"""The official concept-tracking video model's thresholds, and the model itself built as
`sam3.model_builder.build_sam3_video_model` builds it (for the bundle's `detector` block
and the parity reference, tools/concept_reference.py)."""

from __future__ import annotations

import contextlib

from sam3_tvm.errors import Sam3TvmError

# Attributes of the video model (Sam3VideoBase / Sam3VideoInferenceWithInstanceInteractivity)
# that the official concept-tracking code reads as thresholds or switches. Their official
# values (as build_sam3_video_model sets them) are `THRESHOLDS`, read from a constructed
# model on first use (module __getattr__ below), never typed here.
THRESHOLD_ATTRS = (
    # detection: keep detections with prob > this (also NMS's prefilter); NMS mask IoU
    # (NMS only runs when > 0)
    "score_threshold_detection", "det_nms_thresh",
    # association (_associate_det_trk): a det is new if score >= new_det_thresh and its
    # IoU < assoc_iou_thresh with every track; a det "matches" tracks with IoU >=
    # assoc_iou_thresh; a non-empty track is unmatched if IoU < trk_assoc_iou_thresh with
    # every det; one-to-one (Hungarian) track matching if o2o_matching_masklets_enable
    "new_det_thresh", "assoc_iou_thresh", "trk_assoc_iou_thresh", "o2o_matching_masklets_enable",
    # hotstart (_process_hotstart): remove an object born within the last hotstart_delay
    # frames once unmatched on >= hotstart_unmatch_thresh frames, or sharing a det with an
    # older track on >= hotstart_dup_thresh frames; the output delay is hotstart_delay
    "hotstart_delay", "hotstart_unmatch_thresh", "hotstart_dup_thresh",
    # keep-alive counters (only suppress outputs when suppress_unmatched_only_within_hotstart
    # is False)
    "suppress_unmatched_only_within_hotstart", "init_trk_keep_alive", "max_trk_keep_alive",
    "min_trk_keep_alive", "decrease_trk_keep_alive_for_empty_masklets",
    # occlusion suppression before memory encoding (mask IoU >= threshold; 0 = off)
    "suppress_overlapping_based_on_recent_occlusion_threshold",
    # drop new dets whose box centre is within 2.5 % of the border
    "suppress_det_close_to_boundary",
    # hole / sprinkle filling (px) on tracker and new-detection low-res masks
    "fill_hole_area",
    # object limit (the constructor turns -1 into 10000)
    "max_num_objects",
    # reconditioning from high-confidence matched dets every nth frame (<= 0: off), and the
    # box-IoU variant (0: off)
    "recondition_every_nth_frame", "reconstruction_bbox_iou_thresh",
    "reconstruction_bbox_det_score",
    # masklet confirmation (hide unconfirmed masklets)
    "masklet_confirmation_enable", "masklet_confirmation_consecutive_det_thresh",
    # clicks (Sam3VideoInferenceWithInstanceInteractivity)
    "use_prev_mem_frame", "use_stateless_refinement",
    "refinement_detector_cond_frame_removal_window",
)


def __getattr__(name):  # noqa: N807
    # THRESHOLDS: the official values, read from a constructed (tiny, unweighted) video
    # model the first time they are asked for; build_sam3_video_model passes the same
    # constants at every size, and build_concept_model checks every model it builds
    # against them.
    if name == "THRESHOLDS":
        model = build_video_model("tiny")
        value = {k: getattr(model, k) for k in THRESHOLD_ATTRS}
        globals()["THRESHOLDS"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")



def build_video_model(config: str):
    """`build_sam3_video_model` as the official predictor calls it (temporal disambiguation
    on), on the CPU, random weights; `tiny` with the project's small sizes."""
    from sam3_tvm.model import shims
    from sam3_tvm.model.builder import CONFIGS, _override, _tiny_builder, bpe_vocab_path

    if config not in CONFIGS:
        raise Sam3TvmError(f"unknown config {config!r}; choose one of {sorted(CONFIGS)}")
    shims.apply()
    from sam3 import model_builder as mb

    ctx = contextlib.ExitStack()
    if config == "tiny":
        ctx.enter_context(_tiny_builder())
        # the video model's image size is hard-coded to 1008 in the builder (the tracker's
        # is mapped by TINY_OVERRIDES)
        cls = mb.Sam3VideoInferenceWithInstanceInteractivity
        size = CONFIGS[config].image_size
        mb.Sam3VideoInferenceWithInstanceInteractivity = _override(
            cls, {"image_size": {1008: size}})
        ctx.callback(setattr, mb, "Sam3VideoInferenceWithInstanceInteractivity", cls)
    with ctx:
        model = mb.build_sam3_video_model(checkpoint_path=None, load_from_HF=False,
                                          bpe_path=bpe_vocab_path(),
                                          apply_temporal_disambiguation=True, device="cpu")
    return model.eval()
