"""The fixed box bucket is exact: padded slots do not change the answer (torch only)."""
import torch

from sam3_tvm.model import components as C


def test_padded_boxes_equal_the_unpadded_official_prompt(tiny_model):
    from sam3.model.geometry_encoders import Prompt

    cfg = tiny_model.sam3_tvm_config
    head = C.make("grounding_head", tiny_model)
    fpn0, fpn1, fpn2, feats, mask, boxes, labels, pad = C.example_inputs("grounding_head", cfg, seed=3)
    n = int((~pad).sum())  # example: 2 real boxes, 2 padding slots
    with torch.no_grad():
        padded = head(fpn0, fpn1, fpn2, feats, mask, boxes, labels, pad)
        # the same call as Sam3Processor.add_geometric_prompt builds: only the real boxes
        fpn = [fpn0, fpn1, fpn2]
        out = tiny_model.forward_grounding(
            backbone_out={"backbone_fpn": fpn, "vision_pos_enc": [head.pos_enc(f) for f in fpn],
                          "language_features": feats, "language_mask": mask},
            find_input=head.find_input, find_target=None,
            geometric_prompt=Prompt(box_embeddings=boxes[:n], box_mask=pad[:, :n], box_labels=labels[:n]))
    for got, key in zip(padded, ["pred_logits", "pred_boxes", "presence_logit_dec", "pred_masks"]):
        ref = out[key][..., 0] if key == "pred_logits" else out[key]
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
