"""SAM 3 from a compiled bundle, through the C++ runtime: no PyTorch at import or run time.

    import numpy as np, sam3_runtime as s3
    model = s3.Model("bundles/full")                   # cpu; "cuda" for a CUDA bundle
    image = s3.load_image("photo.jpg")                 # or any uint8 RGB array [H, W, 3]
    state = model.encode(image)                        # GIL released while it runs
    found = model.segment(state, text="red car", threshold=0.5)
    found["masks"]   # bool [N, H, W];  found["boxes"]: float32 [N, 4] x0, y0, x1, y1;  found["scores"]: [N]
    one = model.segment_interactive(state, points=[(120, 80)], point_labels=[1])

    video = s3.VideoSession(model, "frames/")          # a JPEG/PNG folder or a video file
    video.add_box(0, obj_id=1, box=(10, 20, 200, 220))
    for f in video.propagate("forward"):               # dicts: frame, obj_ids, masks, boxes, scores, present
        ...

Every error is a sam3_runtime.Error (a RuntimeError) with a message. One Model may be used
from many threads; calls release the GIL (docs/python.md).
"""
from ._sam3 import (Error, ImageState, Model, VideoSession, coco_document, label_image_json, list_images,
                    load_image, parse_classes, read_manifest, rle_encode)

__all__ = ["Error", "ImageState", "Model", "VideoSession", "coco_document", "label_image_json", "list_images",
           "load_image", "parse_classes", "read_manifest", "rle_encode"]
