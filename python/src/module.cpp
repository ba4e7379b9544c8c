// sam3_runtime._sam3: the C++ runtime (sam3/sam3.h, sam3/video.h) for Python, with nanobind.
// Arrays in and out are NumPy, masks are copied once into arrays that own them, and the
// GIL is released while the model computes, so Python threads can run calls at once
// (the Model is thread-safe: docs/reliability.md). Nothing here imports torch.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cmath>
#include <cstring>

#include "sam3/image.h"
#include "sam3/label.h"
#include "sam3/rle.h"
#include "sam3/sam3.h"
#include "sam3/video.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

// Any CPU array (NumPy, or DLPack from torch and others), checked here rather than
// converted silently: a float image scaled to [0, 1] must not become black uint8.
using ImageArray = nb::ndarray<nb::device::cpu>;
using MaskArray = nb::ndarray<const uint8_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

sam3::Image to_image(const ImageArray& a) {
  const nb::dlpack::dtype u8 = nb::dtype<uint8_t>();
  if (a.dtype() != u8 || a.ndim() != 3 || a.shape(2) != 3)
    throw sam3::Error("the image must be a uint8 RGB array [H, W, 3] (got " + std::to_string(a.ndim()) +
                      " dimensions" + (a.ndim() == 3 ? ", " + std::to_string(a.shape(2)) + " channels" : std::string()) +
                      (a.dtype() != u8 ? ", not uint8" : "") + ")");
  sam3::Image img;
  img.height = static_cast<int>(a.shape(0));
  img.width = static_cast<int>(a.shape(1));
  if (img.width <= 0 || img.height <= 0) throw sam3::Error("the image is empty");
  img.rgb.resize(static_cast<size_t>(img.width) * img.height * 3);
  const auto* base = static_cast<const uint8_t*>(a.data());
  const int64_t sy = a.stride(0), sx = a.stride(1), sc = a.stride(2);  // in elements
  size_t k = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x)
      for (int c = 0; c < 3; ++c) img.rgb[k++] = base[y * sy + x * sx + c * sc];
  return img;
}

// A NumPy array that owns a heap vector of T (freed when the array goes).
template <typename T>
nb::ndarray<nb::numpy, T> owned(std::vector<T>&& v, std::initializer_list<size_t> shape) {
  auto* heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), shape, owner);
}

// The same for 0/1 bytes seen as NumPy bool (one byte each, 0 or 1).
nb::ndarray<nb::numpy, bool> owned_bool(std::vector<uint8_t>&& v, std::initializer_list<size_t> shape) {
  auto* heap = new std::vector<uint8_t>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<uint8_t>*>(p); });
  return nb::ndarray<nb::numpy, bool>(reinterpret_cast<bool*>(heap->data()), shape, owner);
}

nb::ndarray<nb::numpy, uint8_t> image_array(sam3::Image&& img) {
  const size_t h = img.height, w = img.width;
  return owned(std::move(img.rgb), {h, w, 3});
}

// Instances -> dict(masks bool [N,H,W], boxes float32 [N,4] x0,y0,x1,y1, scores float32 [N],
// and for interactive prompts low_res_logits float32 [N,M,M]).
nb::dict instances_dict(std::vector<sam3::Instance>&& found, int width, int height, bool logits) {
  const size_t n = found.size(), H = height, W = width;
  std::vector<uint8_t> masks(n * H * W);
  std::vector<float> boxes(n * 4), scores(n), low;
  size_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(masks.data() + i * H * W, found[i].mask.data(), H * W);
    std::copy(found[i].box.begin(), found[i].box.end(), boxes.begin() + i * 4);
    scores[i] = found[i].score;
    if (logits && !found[i].low_res_logits.empty()) {
      if (m == 0) m = static_cast<size_t>(std::lround(std::sqrt(double(found[i].low_res_logits.size()))));
      low.insert(low.end(), found[i].low_res_logits.begin(), found[i].low_res_logits.end());
    }
  }
  nb::dict d;
  d["masks"] = owned_bool(std::move(masks), {n, H, W});
  d["boxes"] = owned(std::move(boxes), {n, 4});
  d["scores"] = owned(std::move(scores), {n});
  if (logits) d["low_res_logits"] = owned(std::move(low), {n, m, m});
  return d;
}

sam3::Box to_box(const std::tuple<float, float, float, float>& t, bool positive = true) {
  return {std::get<0>(t), std::get<1>(t), std::get<2>(t), std::get<3>(t), positive};
}

std::vector<sam3::Point> to_points(const std::vector<std::tuple<float, float>>& pts, const std::vector<int>& labels) {
  if (!labels.empty() && labels.size() != pts.size())
    throw sam3::Error("point_labels must have one label per point (" + std::to_string(pts.size()) + "), got " +
                      std::to_string(labels.size()));
  std::vector<sam3::Point> out;
  for (size_t i = 0; i < pts.size(); ++i) {
    const int l = labels.empty() ? 1 : labels[i];
    if (l != 0 && l != 1) throw sam3::Error("point labels are 1 (positive) or 0 (negative)");
    out.push_back({std::get<0>(pts[i]), std::get<1>(pts[i]), l == 1});
  }
  return out;
}

nb::dict frame_dict(const sam3::VideoFrameResult& r) {
  const size_t n = r.objects.size(), H = r.height, W = r.width;
  std::vector<uint8_t> masks(n * H * W);
  std::vector<float> boxes(n * 4), scores(n);
  std::vector<int32_t> ids(n);
  std::vector<uint8_t> present(n);
  for (size_t i = 0; i < n; ++i) {
    const auto& o = r.objects[i];
    std::memcpy(masks.data() + i * H * W, o.mask.data(), std::min(o.mask.size(), H * W));
    std::copy(o.box.begin(), o.box.end(), boxes.begin() + i * 4);
    scores[i] = o.score;
    ids[i] = o.obj_id;
    present[i] = o.present;
  }
  nb::dict d;
  d["frame"] = r.frame;
  d["obj_ids"] = owned(std::move(ids), {n});
  d["masks"] = owned_bool(std::move(masks), {n, H, W});
  d["boxes"] = owned(std::move(boxes), {n, 4});
  d["scores"] = owned(std::move(scores), {n});
  d["present"] = owned_bool(std::move(present), {n});
  return d;
}

sam3::Direction direction(const std::string& s) {
  if (s == "forward") return sam3::Direction::Forward;
  if (s == "backward") return sam3::Direction::Backward;
  if (s == "both") return sam3::Direction::Both;
  throw sam3::Error("direction must be forward, backward or both, not '" + s + "'");
}

sam3::VideoMemory memory_mode(const std::string& s) {
  if (s == "spill") return sam3::VideoMemory::Spill;
  if (s == "drop") return sam3::VideoMemory::Drop;
  if (s == "all") return sam3::VideoMemory::KeepAll;
  throw sam3::Error("memory must be spill, drop or all, not '" + s + "'");
}

nb::dict manifest_dict(const sam3::Manifest& mf) {
  nb::dict d;
  d["dir"] = mf.dir;
  d["config"] = mf.config_name;
  d["device"] = mf.device;
  d["precision"] = mf.precision;
  d["tvm_version"] = mf.tvm_version;
  d["weights_source"] = mf.weights_source;
  d["image_size"] = mf.image_size;
  d["mask_size"] = mf.mask_size;
  d["num_queries"] = mf.num_queries;
  d["max_boxes"] = mf.max_boxes;
  d["max_points"] = mf.max_points;
  return d;
}

}  // namespace

NB_MODULE(_sam3, m) {
  m.doc() = "SAM 3 on a compiled TVM bundle (the C++ runtime), without PyTorch";
  nb::exception<sam3::Error>(m, "Error", PyExc_RuntimeError);

  m.def("load_image", [](const std::string& path) {
        sam3::Image img;
        {
          nb::gil_scoped_release unlocked;
          img = sam3::load_image(path);
        }
        return image_array(std::move(img));
      }, "path"_a, "Decodes a PNG or JPEG file to uint8 RGB [H, W, 3], as Pillow's convert('RGB').");

  m.def("rle_encode", [](const MaskArray& mask) {
        return sam3::rle_encode(mask.data(), static_cast<int>(mask.shape(0)), static_cast<int>(mask.shape(1)));
      }, "mask"_a, "COCO RLE counts string of a uint8 [H, W] mask (nonzero = foreground), as pycocotools.");

  nb::class_<sam3::ImageState>(m, "ImageState", "An encoded image, reusable across prompts.")
      .def_prop_ro("width", &sam3::ImageState::width)
      .def_prop_ro("height", &sam3::ImageState::height);

  nb::class_<sam3::Model>(m, "Model")
      .def(nb::init<const std::string&, const std::string&>(), "bundle"_a, "device"_a = "cpu",
           nb::call_guard<nb::gil_scoped_release>())
      .def("encode", [](sam3::Model& self, const ImageArray& image) {
             sam3::Image img = to_image(image);
             nb::gil_scoped_release unlocked;
             return self.encode(img);
           }, "image"_a, "Runs the image encoder on uint8 RGB [H, W, 3].")
      .def("segment", [](sam3::Model& self, const sam3::ImageState& state, const std::string& text,
                         const std::vector<std::tuple<float, float, float, float>>& boxes,
                         const std::vector<int>& box_labels, float threshold) {
             if (!box_labels.empty() && box_labels.size() != boxes.size())
               throw sam3::Error("box_labels must have one label per box");
             sam3::ConceptPrompt p;
             p.text = text;
             for (size_t i = 0; i < boxes.size(); ++i) p.boxes.push_back(to_box(boxes[i], box_labels.empty() || box_labels[i] != 0));
             p.threshold = threshold;
             std::vector<sam3::Instance> found;
             {
               nb::gil_scoped_release unlocked;
               found = self.segment(state, p);
             }
             return instances_dict(std::move(found), state.width(), state.height(), false);
           }, "image"_a, "text"_a = "", "boxes"_a = std::vector<std::tuple<float, float, float, float>>{},
           "box_labels"_a = std::vector<int>{}, "threshold"_a = 0.5f,
           "Concept prompt: every instance of a text and/or exemplar boxes (x0, y0, x1, y1 pixels).")
      .def("segment_interactive", [](sam3::Model& self, const sam3::ImageState& state,
                                     const std::vector<std::tuple<float, float>>& points, const std::vector<int>& point_labels,
                                     const std::optional<std::tuple<float, float, float, float>>& box, bool multimask,
                                     const std::optional<nb::ndarray<const float, nb::c_contig, nb::device::cpu>>& mask_input) {
             sam3::InteractivePrompt p;
             p.points = to_points(points, point_labels);
             if (box) p.box = to_box(*box);
             p.multimask = multimask;
             if (mask_input) p.mask_input.assign(mask_input->data(), mask_input->data() + mask_input->size());
             std::vector<sam3::Instance> found;
             {
               nb::gil_scoped_release unlocked;
               found = self.segment_interactive(state, p);
             }
             return instances_dict(std::move(found), state.width(), state.height(), true);
           }, "image"_a, "points"_a = std::vector<std::tuple<float, float>>{}, "point_labels"_a = std::vector<int>{},
           "box"_a = nb::none(), "multimask"_a = true, "mask_input"_a = nb::none(),
           "Click / box prompt: one object. mask_input: a previous low_res_logits row.")
      .def_prop_ro("num_threads", &sam3::Model::num_threads)
      .def_prop_ro("timings", [](const sam3::Model& self) { return self.timings(); })
      .def_prop_ro("manifest", [](const sam3::Model& self) { return manifest_dict(self.manifest()); });

  m.def("read_manifest", [](const std::string& bundle) { return manifest_dict(sam3::load_manifest(bundle)); },
        "bundle"_a, "The bundle's manifest (checked as Model does, files not hashed) as the dict Model.manifest gives.");

  // batch labelling (sam3/label.h): the same functions `sam3 label` runs, for label_ray
  m.def("parse_classes", &sam3::parse_classes, "text"_a, "'cat, dog,cat' -> ['cat', 'dog']");
  m.def("list_images", &sam3::list_images, "images"_a,
        "(path, COCO file name) pairs of a folder or list file, in order (docs/label.md).");
  m.def("label_image_json", [](sam3::Model& model, const std::string& path, const std::string& file_name,
                               const std::vector<std::string>& classes, float threshold) {
        nb::gil_scoped_release unlocked;
        return sam3::label_image_json(model, path, file_name, classes, threshold);
      }, "model"_a, "path"_a, "file_name"_a, "classes"_a, "threshold"_a,
      "One image's COCO record as a JSON line (or {file_name, error}), as sam3 label writes it.");
  m.def("coco_document", &sam3::coco_document, "classes"_a, "records"_a, "info_json"_a = "{}",
        "A COCO instances document (JSON text) from records in order, as sam3 label writes it.");

  nb::class_<sam3::VideoSession>(m, "VideoSession")
      .def("__init__", [](sam3::VideoSession* self, sam3::Model& model, const std::string& video,
                          const std::string& memory) {
             sam3::VideoOptions o;
             o.memory = memory_mode(memory);
             nb::gil_scoped_release unlocked;
             new (self) sam3::VideoSession(model, video, o);
           }, "model"_a, "video"_a, "memory"_a = "spill", nb::keep_alive<1, 2>(),
           "A tracking session on a JPEG/PNG folder or a video file.")
      .def_prop_ro("num_frames", &sam3::VideoSession::num_frames)
      .def_prop_ro("width", &sam3::VideoSession::width)
      .def_prop_ro("height", &sam3::VideoSession::height)
      .def("add_points", [](sam3::VideoSession& self, int frame, int obj_id,
                            const std::vector<std::tuple<float, float>>& points, const std::vector<int>& point_labels,
                            const std::optional<std::tuple<float, float, float, float>>& box) {
             auto pts = to_points(points, point_labels);
             std::optional<sam3::Box> b;
             if (box) b = to_box(*box);
             sam3::VideoFrameResult r;
             {
               nb::gil_scoped_release unlocked;
               r = self.add_points(frame, obj_id, pts, b);
             }
             return frame_dict(r);
           }, "frame"_a, "obj_id"_a, "points"_a = std::vector<std::tuple<float, float>>{},
           "point_labels"_a = std::vector<int>{}, "box"_a = nb::none())
      .def("add_box", [](sam3::VideoSession& self, int frame, int obj_id, const std::tuple<float, float, float, float>& box) {
             sam3::VideoFrameResult r;
             {
               nb::gil_scoped_release unlocked;
               r = self.add_box(frame, obj_id, to_box(box));
             }
             return frame_dict(r);
           }, "frame"_a, "obj_id"_a, "box"_a)
      .def("add_prompt", [](sam3::VideoSession& self, int frame, const std::string& text,
                            const std::optional<std::tuple<float, float, float, float>>& box) {
             sam3::VideoConceptPrompt p;
             p.text = text;
             if (box) p.box = to_box(*box);
             sam3::VideoFrameResult r;
             {
               nb::gil_scoped_release unlocked;
               r = self.add_prompt(frame, p);
             }
             return frame_dict(r);
           }, "frame"_a, "text"_a = "", "box"_a = nb::none(), "Concept prompt: every instance of a text (and/or box).")
      .def("propagate", [](sam3::VideoSession& self, const std::string& dir, int start, int max_frames,
                           const std::optional<nb::callable>& on_frame) {
             sam3::PropagateOptions o{direction(dir), start, max_frames};
             nb::list frames;
             {
               nb::gil_scoped_release unlocked;
               self.propagate(o, [&](const sam3::VideoFrameResult& r) {
                 nb::gil_scoped_acquire locked;  // the results become Python objects
                 nb::dict d = frame_dict(r);
                 if (on_frame) {
                   nb::object keep = (*on_frame)(d);
                   return keep.is_none() || nb::cast<bool>(keep);
                 }
                 frames.append(d);
                 return true;
               });
             }
             return frames;
           }, "direction"_a = "both", "start"_a = -1, "max_frames"_a = -1, "on_frame"_a = nb::none(),
           "Tracks every object; returns one dict per frame, or calls on_frame(dict) for each "
           "(return False to stop) and returns [].")
      .def("remove_object", &sam3::VideoSession::remove_object, "obj_id"_a)
      .def("reset", &sam3::VideoSession::reset)
      .def_prop_ro("object_ids", &sam3::VideoSession::object_ids);
}
