"""The official SAM 3 video tracker run on the CPU: the parity reference for `sam3 track`.

`Sam3TrackerPredictor` (built into the image model as its interactive predictor) is
driven through its public calls (`add_new_points_or_box`, `add_new_mask`,
`propagate_in_video`, `remove_object`, `clear_all_points_in_video`) by the same action
script the C++ session takes (`sam3 track --actions`, docs/video.md). Set-up, as
`build_sam3_video_model` and `Sam3VideoInference` do it:
- memory selection on (`apply_temporal_disambiguation`, the video builder's default);
- frames loaded by the official video loader (`io_utils.load_resource_as_video_frames`:
  PIL bilinear resize, float16 storage, (x - 0.5) / 0.5);
- features from SAM 3's backbone (`Sam3TrackerBase.forward_image` with `backbone` set to
  the detector's: the tracker neck + conv_s0/conv_s1), computed per frame on demand;
- objects added before tracking starts share one state (batched, as the predictor
  does); an object added after that gets a new state, as `Sam3VideoInference` does;
- outputs post-processed as the video predictor does for tracked objects:
  `fill_holes_in_mask_scores` (the video base's `fill_hole_area`), bilinear to video
  size, > 0, boxes from masks, then object-wise non-overlap by the tracker's score
  sigmoid(object_score_logits).
CPU patches: `Tensor.cuda` is a no-op while the tracker runs, states are kept on the CPU
(`offload_state_to_cpu`), plus `shims.apply()` (docs/design.md). One bug fix: sam3 0.1.4's
`_get_empty_mask_ptr` passes `gt_masks` and `frames_to_add_correction_pt` to `track_step`,
which takes neither, so consolidating a frame where one object of a state has no output
(objects prompted on different frames) raises TypeError; the two arguments are dropped
(docs/video.md).
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from sam3_tvm.errors import Sam3TvmError


@contextlib.contextmanager
def _cuda_is_cpu():
    """Also: track_step without the two arguments it does not take (see above)."""
    import torch
    from sam3.model.sam3_tracker_base import Sam3TrackerBase

    saved = torch.Tensor.cuda, Sam3TrackerBase.track_step
    track_step = saved[1]

    def track_step_fixed(self, *a, gt_masks=None, frames_to_add_correction_pt=None, **k):
        return track_step(self, *a, **k)

    torch.Tensor.cuda = lambda self, *a, **k: self
    Sam3TrackerBase.track_step = track_step_fixed
    try:
        yield
    finally:
        torch.Tensor.cuda, Sam3TrackerBase.track_step = saved


def load_mask(path: str) -> np.ndarray:
    """A mask PNG as the CLI reads it: a pixel whose RGB is not black is foreground."""
    from PIL import Image

    return (np.asarray(Image.open(path).convert("RGB")) > 0).any(-1)


class OfficialTracker:
    def __init__(self, model, video_dir: str):
        from sam3.model.io_utils import load_resource_as_video_frames

        from sam3_tvm.model.tracker_config import tracker_block

        self.model = model
        trk = model.inst_interactive_predictor.model
        trk.use_memory_selection = tracker_block(model)["use_memory_selection"]
        trk.backbone = model.backbone
        self.trk = trk
        self.images, self.height, self.width = load_resource_as_video_frames(
            video_dir, image_size=trk.image_size, offload_video_to_cpu=True)
        self.num_frames = len(self.images)
        self.fill_hole_area = tracker_block(model)["output_fill_hole_area"]
        self.states = []

    def _new_state(self):
        with _cuda_is_cpu():
            s = self.trk.init_state(video_height=self.height, video_width=self.width,
                                    num_frames=self.num_frames, offload_state_to_cpu=True)
        s["images"] = self.images
        self.states.append(s)
        return s

    def _state_for(self, obj_id: int):
        for s in self.states:
            if obj_id in s["obj_id_to_idx"]:
                return s
        for s in self.states:  # a new object joins a state that has not started tracking
            if not s["tracking_has_started"]:
                return s
        return self._new_state()

    def _rel(self, xy):
        a = np.asarray(xy, np.float32).reshape(-1, 2)
        return a / np.array([self.width, self.height], np.float32)

    def add_points(self, frame, obj_id, points=None, labels=None, box=None):
        import torch

        s = self._state_for(obj_id)
        pts = torch.from_numpy(self._rel(points)) if points else None
        lab = torch.tensor(labels, dtype=torch.int32) if points else None
        bx = torch.from_numpy(self._rel(box).reshape(-1)) if box is not None else None
        with _cuda_is_cpu(), torch.no_grad():
            self.trk.add_new_points_or_box(s, frame, obj_id, points=pts, labels=lab, box=bx)

    def add_mask(self, frame, obj_id, mask: np.ndarray):
        import torch

        s = self._state_for(obj_id)
        with _cuda_is_cpu(), torch.no_grad():
            self.trk.add_new_mask(s, frame, obj_id, torch.from_numpy(mask))

    def remove_object(self, obj_id):
        import torch

        for s in self.states:
            if obj_id in s["obj_id_to_idx"]:
                with _cuda_is_cpu(), torch.no_grad():
                    self.trk.remove_object(s, obj_id, need_output=False)
        self.states = [s for s in self.states if s["obj_ids"]]

    def reset(self):
        self.states = []

    def _order(self, start, max_frames, reverse):
        conds = [f for s in self.states for f in s["output_dict"]["cond_frame_outputs"]]
        conds += [f for s in self.states for d in s["temp_output_dict_per_obj"].values()
                  for f in d["cond_frame_outputs"]]
        if start is None:
            start = min(conds)
        n = self.num_frames if max_frames is None else max_frames
        if reverse:
            end = max(start - n, 0)
            return list(range(start, end - 1, -1)) if start > 0 else [0]
        return list(range(start, min(start + n, self.num_frames - 1) + 1))

    def propagate(self, direction="forward", start=None, max_frames=None):
        """Yields (frame, {obj_id: (low-res logits [M,M], object score logit)})."""
        import torch

        with _cuda_is_cpu(), torch.no_grad():
            for s in self.states:
                self.trk.propagate_in_video_preflight(s, run_mem_encoder=True)
            passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
            for reverse in passes:
                for f in self._order(start, max_frames, reverse):
                    out = {}
                    for s in self.states:
                        if not s["obj_ids"]:
                            continue
                        for r in self.trk.propagate_in_video(s, start_frame_idx=f,
                                                             max_frame_num_to_track=0,
                                                             reverse=reverse, tqdm_disable=True):
                            _, ids, low, _, scores = r
                            for i, oid in enumerate(ids):
                                out[oid] = (low[i, 0].clone(), float(scores[i, 0]))
                    yield f, out

    def postprocess(self, out: dict) -> dict:
        """{obj_id: {"present", "score", "box" (xyxy, exclusive), "mask"}}, as the official
        video predictor post-processes tracker outputs."""
        import torch
        import torch.nn.functional as F
        from sam3.model.sam3_tracker_utils import fill_holes_in_mask_scores
        from torchvision.ops import masks_to_boxes

        ids = sorted(out)
        if not ids:
            return {}
        low = torch.stack([out[i][0] for i in ids])[:, None]
        low = fill_holes_in_mask_scores(low, max_area=self.fill_hole_area, fill_holes=True,
                                        remove_sprinkles=True)
        video = F.interpolate(low, size=(self.height, self.width), mode="bilinear",
                              align_corners=False)[:, 0] > 0
        present = video.flatten(1).any(1)
        probs = torch.sigmoid(torch.tensor([out[i][1] for i in ids]))
        boxes = torch.zeros(len(ids), 4)
        if bool(present.any()):
            boxes[present] = masks_to_boxes(video[present]) + torch.tensor([0, 0, 1, 1])
        masks = video
        if len(ids) > 1:
            masks = self.trk._apply_object_wise_non_overlapping_constraints(
                video[:, None].float(), probs[:, None], background_value=0)[:, 0] > 0
        return {oid: {"present": bool(present[k]), "score": float(probs[k]),
                      "box": [float(v) for v in boxes[k]], "mask": masks[k].numpy()}
                for k, oid in enumerate(ids)}


def run_actions(model, video_dir: str, actions: list[dict], on_frame=None, on_propagate=None) -> dict:
    """Runs an action script; returns {frame: {obj_id: output}} with the last output per
    frame (what `sam3 track` writes), objects removed later dropped. `on_propagate()` is
    called when a propagation starts, `on_frame(frame)` after each frame (timing hooks)."""
    ref = OfficialTracker(model, video_dir)
    final: dict[int, dict] = {}
    removed: set[int] = set()
    for a in actions:
        op = a["op"]
        if op == "add_points":
            ref.add_points(a["frame"], a.get("obj_id", 1), a.get("points"), a.get("labels"),
                           a.get("box"))
            removed.discard(a.get("obj_id", 1))
        elif op == "add_mask":
            ref.add_mask(a["frame"], a.get("obj_id", 1), load_mask(a["mask"]))
            removed.discard(a.get("obj_id", 1))
        elif op == "propagate":
            if on_propagate:
                on_propagate()
            for f, out in ref.propagate(a.get("direction", "both"), a.get("start"),
                                        a.get("max_frames")):
                if on_frame:
                    on_frame(f)
                final[f] = ref.postprocess(out)
        elif op == "remove_object":
            ref.remove_object(a["obj_id"])
            removed.add(a["obj_id"])
        elif op == "reset":
            ref.reset()
            final.clear()
        else:
            raise Sam3TvmError(f"unknown action {op!r}")
    return {f: {i: o for i, o in objs.items() if i not in removed} for f, objs in final.items()}


def load_actions(path: str) -> list[dict]:
    with open(path) as f:
        actions = json.load(f)
    base = os.path.dirname(os.path.abspath(path))
    for a in actions:
        if a.get("op") == "add_mask" and not os.path.isabs(a["mask"]):
            a["mask"] = os.path.join(base, a["mask"])
    return actions
