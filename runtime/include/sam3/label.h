// Batch labelling: every instance of a list of classes in an image, as COCO annotations
// (`sam3 label`, and the Ray pipeline of the Python package, which both call these two
// functions, so their outputs are the same by construction).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "sam3/sam3.h"

namespace sam3 {

// "cat, dog,,cat" -> {"cat", "dog"}: split at commas, trimmed, empty and repeated dropped.
std::vector<std::string> parse_classes(const std::string& text);

// The images of `images`: a folder (its .jpg/.jpeg/.png files, sorted by name; COCO file
// names relative to it) or a text file with one path per line (blank lines and lines
// starting with '#' skipped; relative paths are relative to the list's folder; COCO file
// names as written). Returns (path to read, COCO file name) pairs; throws sam3::Error.
std::vector<std::pair<std::string, std::string>> list_images(const std::string& images);

// Labels one image file: one concept prompt per class at `threshold`. Returns one JSON
// object (a line of the resumable partial file):
//   {"file_name", "width", "height", "annotations": [{"category_id" (1-based class index),
//    "segmentation": {"size": [h, w], "counts": COCO RLE}, "area" (mask pixels),
//    "bbox": [x, y, w, h], "score"}]}
// or, for an image that cannot be read or labelled, {"file_name", "error": message}.
// `file_name` is what the COCO file will name it; `path` is where it is read.
std::string label_image_json(Model& model, const std::string& path, const std::string& file_name,
                             const std::vector<std::string>& classes, float threshold);

// A COCO instances document from the records above, in the given order: images get ids
// 1..N in that order, annotations 1..M, categories 1..K as `classes`; failed images are
// listed under "failed_images" ({"file_name", "error"}; an extension pycocotools ignores).
// `info` is copied into "info". Throws sam3::Error on a malformed record.
std::string coco_document(const std::vector<std::string>& classes, const std::vector<std::string>& records,
                          const std::string& info_json = "{}");

}  // namespace sam3
