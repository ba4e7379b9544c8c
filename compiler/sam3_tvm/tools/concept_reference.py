"""The official SAM 3 concept-tracking video model run on the CPU: the parity reference for
concept tracking in the C++ runtime (text / exemplar prompts: detect every instance on
every frame and track them).

The model is the official `Sam3VideoInferenceWithInstanceInteractivity`, built by
`sam3.model_builder.build_sam3_video_model` (`apply_temporal_disambiguation=True`, the
predictor's default) with the weights of the image model the bundle is compiled from
(`build_concept_model`), and driven through the official `Sam3VideoPredictor` requests
(`start_session`, `add_prompt`, `propagate_in_video`, `remove_object`, `reset_session`,
`close_session`) by an action script (`run_concept`). See ../shared/docs/sam3-video.md
§2a for the per-frame flow and docs/video.md for the action format.

Everything is fp32 except what the official code casts on every device: the tracker's
memories (`maskmem_features`) are stored as bf16 by `Sam3TrackerPredictor`, as on a GPU.
The one GPU-path cast we remove is the bf16 cast of the SAM2-neck features in
`Sam3ImageOnVideoMultiGPU._build_multigpu_buffer_next_chunk` (see `_fp32_tracker_features`):
this reference is fp32 there, an official GPU run is not.

CPU patches (each applied only inside `cpu_patches()`, each documented where it is
defined): `Tensor.cuda` as a no-op and the `track_step` argument fix (both from
video_reference._cuda_is_cpu), tracker states kept on the CPU (`_states_on_cpu`), fp32
tracker features (`_fp32_tracker_features`), `connected_components_cpu` on an empty batch
(`_empty_connected_components`), a bf16 memory without object pointers upcast at the
memory attention's entry (`_fp32_memory_without_pointers`), and the predictor's
GPU-statistics log helpers (`_no_gpu_stats`). `shims.apply()` (run by `build_model`)
covers import and construction.

Oracles, for deterministic host-logic tests (random weights detect nothing meaningful and
their tracker follows nothing): `oracle` replaces the detector's detections
(`_oracle_detector`, e.g. `ShapeOracle`), `tracker_oracle` makes the tracker follow the
objects (`_oracle_tracker`, e.g. `ShapeOracle.truth`). The host logic stays the official
code; `_trace_hooks` records its decisions per frame.

Constants the official host logic hard-codes (not attributes, so not overridable here):
`_associate_det_trk` HIGH_CONF_THRESH 0.8 and HIGH_IOU_THRESH 0.8 (which matches qualify
for reconditioning), `_recondition_masklets` HIGH_CONF_THRESH 0.8 (on the tracker's
object-score *logit*), `_suppress_overlapping_based_on_recent_occlusion` NO_OBJ_LOGIT -10,
`_suppress_detections_close_to_boundary` margin 0.025, the detector's NMS
(`perflib.nms.nms_masks`, mask IoU on logits > 0) and the tracker's
`_suppress_object_pw_area_shrinkage` (70 %).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from typing import Callable, NamedTuple

import numpy as np

from sam3_tvm.errors import Sam3TvmError
from sam3_tvm.tools.video_reference import _cuda_is_cpu

from sam3_tvm.model.concept_config import THRESHOLD_ATTRS  # noqa: E402  (re-exported)
from sam3_tvm.model.concept_config import build_video_model as _build_video_model  # noqa: E402


def __getattr__(name):
    # THRESHOLDS: read from a constructed model on first use (model/concept_config.py)
    if name == "THRESHOLDS":
        from sam3_tvm.model import concept_config

        return concept_config.THRESHOLDS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def image_to_video_state_dict(image_state_dict: dict) -> dict:
    """Image-model keys -> video-model keys, the inverse of the official loaders' mapping
    of one `sam3.pt` (model_builder._load_checkpoint strips `detector.` and maps `tracker.`
    to `inst_interactive_predictor.model.`; build_sam3_video_model loads the file as is):
    `inst_interactive_predictor.model.K` -> `tracker.K`, every other `K` -> `detector.K`."""
    prefix = "inst_interactive_predictor.model."
    return {("tracker." + k[len(prefix):]) if k.startswith(prefix) else ("detector." + k): v
            for k, v in image_state_dict.items()}


def build_concept_model(config: str = "tiny", seed: int = 0, checkpoint: str | None = None):
    """The official `Sam3VideoInferenceWithInstanceInteractivity` on the CPU (eval, fp32)
    with exactly the weights of `build_model(config, checkpoint, seed)`, the image model the
    bundle is compiled from (its seeded init incl. `_init_uninitialised`, or the
    checkpoint), loaded strictly: every parameter and buffer of the video model gets a
    value, no key is left over, shapes agree."""
    import torch

    from sam3_tvm.model.builder import build_model

    image = build_model(config, checkpoint=checkpoint, seed=seed)
    torch.manual_seed(seed)
    model = _build_video_model(config)
    state = image_to_video_state_dict(image.state_dict())
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise Sam3TvmError(f"image -> video weights: missing {missing[:8]}, unexpected "
                           f"{unexpected[:8]}, shape mismatches {shapes[:8]}")
    model.load_state_dict(state, strict=True)
    model.eval()
    expected = globals().get("THRESHOLDS") or __getattr__("THRESHOLDS")
    changed = {k: (getattr(model, k), v) for k, v in expected.items() if getattr(model, k) != v}
    if changed:
        raise Sam3TvmError(f"video model thresholds differ from THRESHOLDS: {changed}")
    model.sam3_tvm_config = image.sam3_tvm_config
    return model


# ---------------------------------------------------------------------------------------
# CPU patches


@contextlib.contextmanager
def _patched(obj, name, value):
    saved = obj.__dict__[name] if name in obj.__dict__ else None
    setattr(obj, name, value)
    try:
        yield
    finally:
        if saved is None:
            delattr(obj, name)
        else:
            setattr(obj, name, saved)


def _states_on_cpu():
    """`Sam3TrackerPredictor.init_state` puts the state's storage on "cuda" unless
    `offload_state_to_cpu=True`, and the video model calls it without (in
    `_tracker_add_new_objects` and `_init_new_tracker_state`). We force
    `offload_state_to_cpu=True`: storage on the CPU, the same values."""
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor

    init_state = Sam3TrackerPredictor.init_state

    def init_state_cpu(self, *a, **k):
        k["offload_state_to_cpu"] = True
        return init_state(self, *a, **k)

    return _patched(Sam3TrackerPredictor, "init_state", init_state_cpu)


def _fp32_tracker_features():
    """`Sam3ImageOnVideoMultiGPU._build_multigpu_buffer_next_chunk` casts the SAM2-neck
    features (`backbone_fpn`, 3 levels) to bf16 for an all-gather (even with one GPU,
    where the all-gather is the identity). On the CPU the bf16 fpn0/fpn1 then meet the
    fp32 `conv_s0`/`conv_s1` weights in `run_backbone_and_detection` and conv2d raises a
    dtype error. This reference is fp32: we keep the detector's own fp32 features, by
    capturing `forward_grounding`'s output during the chunk build and putting its fp32
    `backbone_fpn` into the buffer in place of the bf16 copies (one process: the chunk is
    one frame, `frame_idx_begin`). An official GPU run rounds these features to bf16."""
    from sam3.model.sam3_image import Sam3ImageOnVideoMultiGPU

    build = Sam3ImageOnVideoMultiGPU._build_multigpu_buffer_next_chunk

    def build_fp32(self, *a, **k):
        if self.world_size != 1:
            raise Sam3TvmError("the concept reference runs in one process (world_size 1)")
        captured = []
        forward_grounding = self.forward_grounding

        def capture(*a2, **k2):
            out = forward_grounding(*a2, **k2)
            captured.append(out["prev_encoder_out"]["backbone_out"]["sam2_backbone_out"])
            return out

        with _patched(self, "forward_grounding", capture):
            build(self, *a, **k)
        frame = k["frame_idx_begin"]
        buffer = k["multigpu_buffer"]
        if self.gather_backbone_out and frame in buffer:
            for i, x in enumerate(captured[-1]["backbone_fpn"]):
                buffer[frame][f"tracker_backbone_fpn_{i}"] = (x, None)

    return _patched(Sam3ImageOnVideoMultiGPU, "_build_multigpu_buffer_next_chunk", build_fp32)


def _empty_connected_components():
    """`perflib.connected_components.connected_components_cpu` does `torch.stack([])` on an
    empty batch and raises. `fill_holes_in_mask_scores` reaches it with 0 masks in
    `build_outputs` on every frame without new detections. We return empty labels and
    counts of the input's shape for a batch of 0 (what the loop would give)."""
    import torch
    from sam3.perflib import connected_components as cc

    cc_cpu = cc.connected_components_cpu

    def cc_cpu_fixed(input_tensor):
        if input_tensor.shape[0] == 0:
            empty = torch.zeros(input_tensor.shape, dtype=torch.int64, device=input_tensor.device)
            return empty, empty.clone()
        return cc_cpu(input_tensor)

    return _patched(cc, "connected_components_cpu", cc_cpu_fixed)


@contextlib.contextmanager
def _no_gpu_stats():
    """`Sam3VideoPredictor._get_session_stats` / `_get_torch_and_gpu_properties` call
    `torch.cuda.memory_allocated()` / `get_device_properties()`; they are evaluated eagerly
    inside `logger.debug(f"...")` in `start_session`, `propagate_in_video` and
    `close_session`, so they run (and fail without CUDA) even with debug logging off.
    We return "" (log text only)."""
    from sam3.model.sam3_video_predictor import Sam3VideoPredictor

    with contextlib.ExitStack() as stack:
        for name in ("_get_session_stats", "_get_torch_and_gpu_properties"):
            stack.enter_context(_patched(Sam3VideoPredictor, name, lambda self: ""))
        yield


def _fp32_memory_without_pointers():
    """The tracker stores its memories (`maskmem_features`) as bf16 on every device. In
    `_prepare_memory_conditioned_features` they are concatenated with the object pointers
    (fp32), which promotes the memory to fp32; with no pointer at all (a frame whose only
    conditioning frames lie ahead of it, e.g. a partial propagation after a click, which
    runs forward from frame 0 while the click is on a later frame and the detector's
    conditioning frames around it were cleared) the memory stays bf16. On a GPU the whole
    run is under bf16 autocast and that works; on the CPU (autocast off, shims) the
    cross-attention's `v_proj` gets bf16 input and fp32 weights and F.linear raises. We
    upcast a bf16 `prompt` to fp32 at the memory attention's entry
    (`TransformerEncoderCrossAttention.forward`): the same values torch.cat gives whenever
    a pointer is present."""
    import torch
    from sam3.model.decoder import TransformerEncoderCrossAttention as Enc

    forward = Enc.forward

    def forward_fp32(self, *a, **k):
        if "prompt" in k and k["prompt"].dtype == torch.bfloat16:
            k["prompt"] = k["prompt"].float()
        return forward(self, *a, **k)

    return _patched(Enc, "forward", forward_fp32)


@contextlib.contextmanager
def cpu_patches():
    """Every patch the official concept-tracking flow needs on a CPU, for the duration of
    the block. `_cuda_is_cpu` (video_reference): `Tensor.cuda` is the identity (frames in
    `init_state` via `load_resource_as_video_frames`, memories in
    `_prepare_memory_conditioned_features`, `prev_sam_mask_logits` in
    `add_new_points_or_box`), and `track_step` ignores the two arguments sam3 0.1.4's
    `_get_empty_mask_ptr` passes but it does not take."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_cuda_is_cpu())
        stack.enter_context(_states_on_cpu())
        stack.enter_context(_fp32_tracker_features())
        stack.enter_context(_empty_connected_components())
        stack.enter_context(_fp32_memory_without_pointers())
        stack.enter_context(_no_gpu_stats())
        yield


# ---------------------------------------------------------------------------------------
# oracle detector


Detections = tuple  # (masks [N, M, M] float logits, boxes_xyxy [N, 4] normalised, scores [N])


def _oracle_detector(model, oracle: Callable[[int], Detections]):
    """`Sam3VideoBase.run_backbone_and_detection` with the detector's detections replaced by
    `oracle(frame_idx)`: the original still runs (it fills `feature_cache` with the tracker
    features and the detector buffer), its detections are discarded. The oracle's are
    treated as the detector's raw outputs: NMS at `det_nms_thresh` (if > 0, as the
    detector runs it), then prob > `score_threshold_detection`, and none at all when
    `allow_new_detections` is False (the original shifts the probs by -1e8)."""
    import torch
    from sam3.perflib.nms import nms_masks

    run = type(model).run_backbone_and_detection
    size = model.tracker.low_res_mask_size

    def run_with_oracle(frame_idx, num_frames, input_batch, geometric_prompt, feature_cache,
                        reverse, allow_new_detections):
        det = run(model, frame_idx=frame_idx, num_frames=num_frames, input_batch=input_batch,
                  geometric_prompt=geometric_prompt, feature_cache=feature_cache,
                  reverse=reverse, allow_new_detections=allow_new_detections)
        masks, boxes, scores = oracle(frame_idx)
        masks = torch.as_tensor(np.asarray(masks, np.float32)).reshape(-1, size, size)
        boxes = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)
        scores = torch.as_tensor(np.asarray(scores, np.float32)).reshape(-1)
        if not (len(masks) == len(boxes) == len(scores)):
            raise Sam3TvmError("oracle: masks, boxes and scores differ in number")
        keep = scores > model.score_threshold_detection
        if model.det_nms_thresh > 0.0 and len(scores):
            keep &= nms_masks(pred_probs=scores, pred_masks=masks,
                              prob_threshold=model.score_threshold_detection,
                              iou_threshold=model.det_nms_thresh)
        if not allow_new_detections:
            keep[:] = False
        return {"bbox": boxes[keep].to(det["bbox"].dtype), "mask": masks[keep],
                "scores": scores[keep]}

    return _patched(model, "run_backbone_and_detection", run_with_oracle)


class ShapeOracle:
    """Oracles for the synthetic clip (`synthetic_clip.write_clip`): the square, the disc
    and the triangle (indices 0, 1, 2). `clip` is the frames folder (size from `0.png`) or
    (width, height). Masks are rasterised from the clip's geometry
    (`synthetic_clip.object_boxes`, drawn as `synthetic_clip.frame` draws them: triangle,
    square, then the disc in front, so an occluded pixel belongs to the shape in front) at
    video resolution, area-averaged to `mask_size`² and thresholded at 0.5, as ±10
    logits; boxes are the geometry's, normalised xyxy; `scores` fixed per shape.

    - `oracle(frame)`: the detector oracle (run_concept's `oracle`): every shape, except
      that `stop_after={index: k}` stops reporting shape `index` after frame k;
    - `oracle.truth(frame)`: all three masks, always (run_concept's `tracker_oracle`).
    `loop` as in write_clip."""

    def __init__(self, clip, mask_size: int = 96, scores=(0.95, 0.9, 0.85), stop_after=None,
                 loop: int = 0):
        from PIL import Image

        if isinstance(clip, (str, os.PathLike)):
            with Image.open(os.path.join(clip, "0.png")) as im:
                self.width, self.height = im.size
        else:
            self.width, self.height = clip
        self.mask_size, self.loop = mask_size, loop
        self.scores = np.asarray(scores, np.float32)
        self.stop_after = dict(stop_after or {})

    def _shapes(self, frame_idx: int):
        from PIL import Image, ImageDraw
        import torch
        import torch.nn.functional as F

        from sam3_tvm.tools.synthetic_clip import object_boxes

        w, h = self.width, self.height
        t = frame_idx % self.loop if self.loop else frame_idx
        sq, disc, tri = object_boxes(t, w, h)
        label = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(label)
        d.polygon([((tri[0] + tri[2]) / 2, tri[1]), (tri[2], tri[3]), (tri[0], tri[3])], fill=3)
        d.rectangle(sq, fill=1)
        d.ellipse(disc, fill=2)
        lab = torch.from_numpy(np.asarray(label).astype(np.int64))
        onehot = torch.stack([(lab == v).float() for v in (1, 2, 3)])[:, None]
        frac = F.interpolate(onehot, size=(self.mask_size, self.mask_size), mode="area")[:, 0]
        masks = torch.where(frac > 0.5, 10.0, -10.0).numpy()
        boxes = np.clip(np.asarray([sq, disc, tri], np.float32) / np.float32([w, h, w, h]), 0, 1)
        return masks, boxes

    def truth(self, frame_idx: int) -> np.ndarray:
        return self._shapes(frame_idx)[0]

    def __call__(self, frame_idx: int) -> Detections:
        masks, boxes = self._shapes(frame_idx)
        keep = [i for i in range(3) if frame_idx <= self.stop_after.get(i, frame_idx)]
        return masks[keep], boxes[keep], self.scores[keep]


def shape_oracle(clip, mask_size: int = 96, scores=(0.95, 0.9, 0.85), stop_after=None,
                 loop: int = 0) -> ShapeOracle:
    """The synthetic clip's shapes as detections (ShapeOracle)."""
    return ShapeOracle(clip, mask_size, scores, stop_after, loop)


@contextlib.contextmanager
def _oracle_tracker(model, truth: Callable[[int], np.ndarray]):
    """A tracker that follows the objects perfectly, for host-logic tests: random tracker
    weights do not follow anything, so with them every track is unmatched from its second
    frame on. An object spawned from a detection is bound to the `truth(frame)` mask
    ([K, M, M] logits of every object on the frame) it overlaps most on its spawn frame
    (mask IoU >= 0.5; otherwise it stays unbound). In the detect-and-track step
    (`_propogate_tracker_one_frame_local_gpu` without memory encoding), a bound object's
    low-res logits become its truth mask on the frame and its object-score logit +10
    (-10 if the mask is empty). The tracker's networks still run and keep their own state;
    memories are encoded from these masks, as from any tracker output
    (`_tracker_update_memories`). Partial propagation after clicks is not touched."""
    import torch
    from sam3.perflib.masks_ops import mask_iou

    cls = type(model)
    add_fn = cls._tracker_add_new_objects
    prop_fn = cls._propogate_tracker_one_frame_local_gpu
    binding: dict[int, int] = {}

    def add_new_objects(*a, **k):
        t = torch.as_tensor(np.asarray(truth(k["frame_idx"]), np.float32))
        if len(t):
            iou = mask_iou(k["new_obj_masks"] > 0, t > 0)
            for oid, row in zip(k["new_obj_ids"], iou):
                if float(row.max()) >= 0.5:
                    binding[int(oid)] = int(row.argmax())
        return add_fn(model, *a, **k)

    def propagate_one_frame(inference_states, frame_idx, reverse, run_mem_encoder=False):
        ids, low, scores = prop_fn(model, inference_states, frame_idx=frame_idx, reverse=reverse,
                                   run_mem_encoder=run_mem_encoder)
        if run_mem_encoder or not len(ids):
            return ids, low, scores
        t = torch.as_tensor(np.asarray(truth(frame_idx), np.float32))
        low, scores = low.clone(), scores.clone()
        for i, oid in enumerate(ids):
            if int(oid) in binding:
                low[i] = t[binding[int(oid)]].to(low.dtype)
                scores[i] = 10.0 if bool((low[i] > 0).any()) else -10.0
        return ids, low, scores

    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(model, "_tracker_add_new_objects", add_new_objects))
        stack.enter_context(_patched(model, "_propogate_tracker_one_frame_local_gpu",
                                     propagate_one_frame))
        yield


# ---------------------------------------------------------------------------------------
# internal decisions, per processed frame


@contextlib.contextmanager
def _trace_hooks(model, trace: list, phase: list):
    """Records, for every frame the detect-and-track step processes (`add_prompt` with
    text/boxes, full propagation), what the official host logic decided:

    - `tracked`: ids going into the frame (tracker_metadata_prev["obj_ids_all_gpu"]);
    - `detections`: number of detections after thresholding and NMS (det_out), `scores`;
    - `spawned`: new object ids (plan "new_det_obj_ids": dets with score >= new_det_thresh
      and IoU < assoc_iou_thresh with every track, after the object limit);
    - `matched`: tracks that some detection overlaps with mask IoU >= assoc_iou_thresh
      (union of plan "det_to_matched_trk_obj_ids"; feeds keep-alive, the duplicate count
      and masklet confirmation); `det_matches`: {det index: matched track ids, in the
      official order} for the detections that match any (>= 2 ids: a duplicate, counted
      against every id but the earliest-born by hotstart);
    - `unmatched`: non-empty tracks with IoU < trk_assoc_iou_thresh to every detection
      (plan "unmatched_trk_obj_ids"; counted by hotstart removal). A track can be both
      matched (>= 0.1) and unmatched (< 0.5);
    - `empty`: tracks whose mask is empty on this frame (_associate_det_trk's
      empty_trk_obj_ids; neither matched nor unmatched);
    - `removed`: ids removed by hotstart on this frame (plan "obj_ids_newly_removed");
    - `suppressed`: ids whose outputs are hidden on this frame but still tracked
      (rank0_metadata["suppressed_obj_ids"][frame], keep-alive <= 0; only when
      suppress_unmatched_only_within_hotstart is False);
    - `occlusion_suppressed`: tracks whose logits were set to -10 before memory encoding
      because they overlap (IoU >= suppress_overlapping_..._threshold) a track occluded
      less recently (_get_objects_to_suppress_based_on_most_recently_occluded);
    - `reconditioned`: ids re-added from their detector mask (`_recondition_masklets` ->
      `tracker.add_new_mask`, every recondition_every_nth_frame-th frame, only for
      high-confidence matches whose tracker object-score logit > 0.8);
    - `high_conf_matches`: plan "trk_id_to_max_iou_high_conf_det" {track id: det index}.
    """
    cls = type(model)
    current: dict = {}

    plan_fn = cls.run_tracker_update_planning_phase
    assoc_fn = cls._associate_det_trk
    occl_fn = cls._get_objects_to_suppress_based_on_most_recently_occluded
    recond_fn = cls._recondition_masklets

    def ids(a):
        return sorted(int(i) for i in a)

    def associate(*a, **k):
        out = assoc_fn(model, *a, **k)
        current["empty"] = ids(out[4])
        return out

    def occlusion(binary, last_occluded, obj_ids, frame_idx=None, reverse=False):
        sup = occl_fn(model, binary, last_occluded, obj_ids, frame_idx, reverse)
        current["occlusion_suppressed"] = ids(np.asarray(obj_ids)[sup.cpu().numpy()])
        return sup

    def recondition(*a, **k):
        add_new_mask = model.tracker.add_new_mask

        def record(*a2, **k2):
            current.setdefault("reconditioned", set()).add(int(k2["obj_id"]))
            return add_new_mask(*a2, **k2)

        with _patched(model.tracker, "add_new_mask", record):
            return recond_fn(model, *a, **k)

    def plan(*a, **k):
        current.clear()
        prev = k["tracker_metadata_prev"]
        det = k["det_out"]
        tracked = ids(prev["obj_ids_all_gpu"])
        update, meta = plan_fn(model, *a, **k)
        frame = k["frame_idx"]
        matched, det_matches = set(), {}
        for d, v in update["det_to_matched_trk_obj_ids"].items():
            matched.update(int(i) for i in v)
            if len(v):
                det_matches[int(d)] = [int(i) for i in v]
        trace.append({
            "frame": int(frame), "reverse": bool(k["reverse"]), "phase": phase[0],
            "tracked": tracked, "detections": int(len(det["scores"])),
            "scores": [float(s) for s in det["scores"]],
            "spawned": ids(update["new_det_obj_ids"]), "matched": sorted(matched),
            "det_matches": det_matches,
            "unmatched": ids(update["unmatched_trk_obj_ids"]),
            "empty": current.get("empty", []),
            "removed": ids(update["obj_ids_newly_removed"]),
            "suppressed": ids(meta["rank0_metadata"]["suppressed_obj_ids"].get(frame, set())),
            "occlusion_suppressed": current.get("occlusion_suppressed", []),
            "reconditioned": sorted(current.get("reconditioned", set())),
            "high_conf_matches": {int(t): int(d) for t, d in
                                  update["trk_id_to_max_iou_high_conf_det"].items()},
        })
        return update, meta

    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(model, "run_tracker_update_planning_phase", plan))
        stack.enter_context(_patched(model, "_associate_det_trk", associate))
        stack.enter_context(_patched(
            model, "_get_objects_to_suppress_based_on_most_recently_occluded", occlusion))
        stack.enter_context(_patched(model, "_recondition_masklets", recondition))
        yield


# ---------------------------------------------------------------------------------------
# running an action script


class ConceptRun(NamedTuple):
    frames: dict   # {frame: {obj_id: {"present", "score", "box", "mask"}}}, last output per frame
    trace: list    # one dict per frame processed by detect-and-track (_trace_hooks)
    passes: list   # one dict per propagate request: mode chosen by the official model


def _parse(outputs: dict, width: int, height: int) -> dict:
    """The official `_postprocess_output` -> {obj_id: {"present", "score" (out_probs),
    "box" (xyxy pixels, exclusive max), "mask" (bool HxW)}}. Every object the official
    output lists is present (it drops empty masks and hidden ids); its box and the
    emptiness test come before the object-wise non-overlap step, so the final mask can be
    smaller, even empty. `out_boxes_xywh` is normalised and comes from
    `perflib.masks_to_boxes` (inclusive max, w = x2 - x1), so the exclusive box is
    (x, y, x + w + 1, y + h + 1) in pixels."""
    res = {}
    for k, oid in enumerate(outputs["out_obj_ids"]):
        x, y, bw, bh = (float(v) for v in outputs["out_boxes_xywh"][k])
        x0, y0 = round(x * width), round(y * height)
        x1, y1 = round((x + bw) * width) + 1, round((y + bh) * height) + 1
        res[int(oid)] = {"present": True, "score": float(outputs["out_probs"][k]),
                         "box": [float(x0), float(y0), float(x1), float(y1)],
                         "mask": np.asarray(outputs["out_binary_masks"][k], bool)}
    return res


@contextlib.contextmanager
def _overrides(model, overrides: dict | None):
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(THRESHOLD_ATTRS))
    if unknown:
        raise Sam3TvmError(f"unknown threshold overrides {unknown}; "
                           f"known: {list(THRESHOLD_ATTRS)}")
    saved = {k: getattr(model, k) for k in overrides}
    try:
        for k, v in overrides.items():
            setattr(model, k, v)
        if model.max_num_objects <= 0:  # as the constructor does
            model.max_num_objects = 10000
        delay = model.hotstart_delay
        if delay > 0 and max(model.hotstart_unmatch_thresh, model.hotstart_dup_thresh) > delay:
            raise Sam3TvmError("hotstart_unmatch_thresh and hotstart_dup_thresh must be <= "
                               "hotstart_delay (the constructor asserts it)")
        yield
    finally:
        for k, v in saved.items():
            setattr(model, k, v)


def _predictor(model):
    """The official `Sam3VideoPredictor` around an existing model (its __init__ builds a
    model and moves it to CUDA)."""
    from sam3.model.sam3_video_predictor import Sam3VideoPredictor

    p = Sam3VideoPredictor.__new__(Sam3VideoPredictor)
    p.model = model
    p.async_loading_frames = False
    p.video_loader_type = "cv2"  # only used for video files; frames folders use PIL
    return p


class ConceptSession:
    """One official predictor session on a frames folder, with the CPU patches, threshold
    overrides, oracles and trace hooks active while it is open (a context manager; the
    patches are process-wide for that time). `apply(action)` runs one action of the
    script format of `run_concept`; `result()` gives the ConceptRun so far; `state` is the
    official inference state (e.g. `tracked_ids()` reads its tracker metadata)."""

    def __init__(self, model, video_dir: str, overrides: dict | None = None,
                 oracle: Callable[[int], Detections] | None = None,
                 tracker_oracle: Callable[[int], np.ndarray] | None = None, on_frame=None):
        self.model, self.video_dir = model, video_dir
        self.overrides, self.oracle, self.tracker_oracle = overrides, oracle, tracker_oracle
        self.on_frame = on_frame
        self.final: dict[int, dict] = {}
        self.removed: set[int] = set()
        self.trace: list[dict] = []
        self.passes: list[dict] = []
        self._phase = ["add_prompt"]
        self._stack = None

    def __enter__(self):
        import torch

        stack = contextlib.ExitStack()
        try:
            stack.enter_context(cpu_patches())
            stack.enter_context(torch.inference_mode())
            stack.enter_context(_overrides(self.model, self.overrides))
            stack.enter_context(_trace_hooks(self.model, self.trace, self._phase))
            if self.oracle is not None:
                stack.enter_context(_oracle_detector(self.model, self.oracle))
            if self.tracker_oracle is not None:
                stack.enter_context(_oracle_tracker(self.model, self.tracker_oracle))
            self.predictor = _predictor(self.model)
            self.session = self.predictor.handle_request({
                "type": "start_session", "resource_path": self.video_dir,
                "session_id": f"concept-{uuid.uuid4()}"})["session_id"]
            stack.callback(self.predictor.handle_request,
                           {"type": "close_session", "session_id": self.session})
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        self.state = self.predictor._get_session(self.session)["state"]
        self.width, self.height = self.state["orig_width"], self.state["orig_height"]
        self.num_frames = self.state["num_frames"]
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False

    def _request(self, **req):
        return self.predictor.handle_request({"session_id": self.session, **req})

    def tracked_ids(self) -> list[int]:
        """Object ids the official model tracks now (tracker_metadata["obj_ids_all_gpu"])."""
        meta = self.state["tracker_metadata"]
        return sorted(int(i) for i in meta.get("obj_ids_all_gpu", []))

    def apply(self, a: dict) -> None:
        op = a["op"]
        W, H = self.width, self.height
        if op in ("add_prompt", "add_points") and a.get("points") is not None:
            if a.get("box") is not None or a.get("text") is not None or a.get("boxes"):
                raise Sam3TvmError("the official video model takes clicks alone "
                                   "(no text or box with points)")
            tracked = self.tracked_ids()
            if a["obj_id"] not in tracked and len(tracked) >= self.model.max_num_objects:
                # add_tracker_new_points refuses it and returns 4 values where
                # Sam3VideoPredictor.add_prompt unpacks 2 (ValueError in sam3 0.1.4)
                raise Sam3TvmError(f"object {a['obj_id']}: already tracking {len(tracked)} "
                                   f"objects (max_num_objects); the official predictor fails")
            pts = [[x / W, y / H] for x, y in a["points"]]
            labels = a.get("labels") or [1] * len(pts)
            self._phase[0] = "add_points"
            r = self._request(type="add_prompt", frame_index=a["frame"], points=pts,
                              point_labels=labels, obj_id=a["obj_id"])
            self.final[r["frame_index"]] = _parse(r["outputs"], W, H)
            self.removed.discard(a["obj_id"])
        elif op == "add_prompt":
            req = {"type": "add_prompt", "frame_index": a["frame"], "text": a.get("text")}
            if a.get("boxes"):
                req["bounding_boxes"] = [[x0 / W, y0 / H, (x1 - x0) / W, (y1 - y0) / H]
                                         for x0, y0, x1, y1 in a["boxes"]]
                req["bounding_box_labels"] = a.get("box_labels") or [1] * len(a["boxes"])
            elif req["text"] is None:
                raise Sam3TvmError("add_prompt needs text, boxes or points")
            self._phase[0] = "add_prompt"
            r = self._request(**req)
            self.final.clear()  # a concept prompt resets the session
            self.removed.clear()
            self.final[r["frame_index"]] = _parse(r["outputs"], W, H)
        elif op == "propagate":
            direction = a.get("direction", "both")
            history = self.state["action_history"]
            n0 = len(history)
            self._phase[0] = "propagate"
            for r in self.predictor.handle_stream_request({
                    "type": "propagate_in_video", "session_id": self.session,
                    "propagation_direction": direction, "start_frame_index": a.get("start"),
                    "max_frame_num_to_track": a.get("max_frames")}):
                if self.on_frame:
                    self.on_frame(r["frame_index"])
                self.final[r["frame_index"]] = _parse(r["outputs"], W, H)
            for h in history[n0:]:
                self.passes.append({"mode": h["type"], "obj_ids": h["obj_ids"],
                                    "start": a.get("start"), "direction": direction})
        elif op == "remove_object":
            self._request(type="remove_object", obj_id=a["obj_id"])
            self.removed.add(a["obj_id"])
        elif op == "reset":
            self._request(type="reset_session")
            self.final.clear()
            self.removed.clear()
        else:
            raise Sam3TvmError(f"unknown or unsupported action {op!r} (the official concept "
                               f"video model takes add_prompt, propagate, remove_object, reset)")

    def result(self) -> ConceptRun:
        frames = {f: {i: o for i, o in objs.items() if i not in self.removed}
                  for f, objs in self.final.items()}
        return ConceptRun(frames, list(self.trace), list(self.passes))


def run_concept(model, video_dir: str, actions: list[dict], overrides: dict | None = None,
                oracle: Callable[[int], Detections] | None = None,
                tracker_oracle: Callable[[int], np.ndarray] | None = None,
                on_frame=None) -> ConceptRun:
    """Runs an action script through the official predictor on the CPU.

    Actions (docs/video.md, `sam3 track --actions`, plus concept prompts), pixels:
    - `{"op": "add_prompt", "frame", "text"?, "boxes"?: [[x0,y0,x1,y1]], "box_labels"?}`:
      a concept prompt (the official call resets the session first); boxes become the
      official normalised xywh exemplars (the official code takes exactly one on a frame
      that has no output yet); labels default to 1;
    - `{"op": "add_prompt" | "add_points", "frame", "obj_id", "points": [[x,y]], "labels"}`:
      clicks on an object (a new id adds an object, a known id refines it); the official
      code needs outputs cached on that frame, and the next (partial) propagation on
      every frame it visits (a concept prompt and a full propagation over them first);
    - `{"op": "propagate", "direction": "forward"|"backward"|"both", "start", "max_frames"}`;
    - `{"op": "remove_object", "obj_id"}`, `{"op": "reset"}`.
    `overrides`: attribute values (keys of THRESHOLD_ATTRS) set on the model for this run
    and restored after it.
    `oracle(frame) -> (masks [N,M,M] logits, boxes_xyxy [N,4] normalised, scores [N])`
    replaces the detector's detections (_oracle_detector); `tracker_oracle(frame) -> masks
    [K,M,M]` makes the tracker follow those objects perfectly (_oracle_tracker), e.g.
    `ShapeOracle.truth`. `on_frame(frame)` is called for every propagated frame.

    Returns ConceptRun(frames, trace, passes): `frames` holds the last output of every
    frame, from propagation and from the prompt calls (`add_prompt` returns its frame;
    a backward propagation starts at start - 1, so the prompted frame's output is the
    prompt's), with objects removed by `remove_object` dropped; `trace` the host-logic
    decisions per processed frame (_trace_hooks); `passes` the official propagation mode
    of each `propagate_in_video` call (full, partial, fetch)."""
    with ConceptSession(model, video_dir, overrides, oracle, tracker_oracle, on_frame) as s:
        for a in actions:
            s.apply(a)
        return s.result()
