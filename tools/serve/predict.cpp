#include "predict.h"

#include <algorithm>
#include <cmath>

#include "base64.h"
#include <openssl/evp.h>
#include "sam3/limits.h"

namespace sam3::serve {

namespace {

std::string trim(const std::string& s) {
  const char* ws = " \t\r\n";
  const size_t a = s.find_first_not_of(ws);
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

float number_field(const nlohmann::json& v, const std::string& name) {
  if (!v.is_number()) throw RequestError("INVALID_REQUEST", name + " must be a number");
  const double d = v.get<double>();
  if (!std::isfinite(d)) throw RequestError("INVALID_REQUEST", name + " must be finite");
  return static_cast<float>(d);
}

bool bool_field(const nlohmann::json& v, const std::string& name) {
  if (!v.is_boolean()) throw RequestError("INVALID_REQUEST", name + " must be true or false");
  return v.get<bool>();
}

bool mark_label(const nlohmann::json& m, size_t i) {
  if (!m.contains("label")) return true;  // the client always sends one; positive otherwise
  const auto& l = m["label"];
  if (l.is_number_integer() && (l.get<int64_t>() == 0 || l.get<int64_t>() == 1)) return l.get<int64_t>() == 1;
  if (l.is_boolean()) return l.get<bool>();
  throw RequestError("INVALID_REQUEST", "marks[" + std::to_string(i) + "].label must be 1 (positive) or 0 (negative)");
}

// The cache key: SHA-256 of the image file's bytes, in hex.
std::string image_key(const std::vector<uint8_t>& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), md, &n, EVP_sha256(), nullptr) != 1) throw Error("SHA-256 failed");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 15]);
  }
  return out;
}

}  // namespace

std::vector<std::string> split_concepts(const std::string& text) {
  char sep = 0;
  if (text.find(',') != std::string::npos) sep = ',';
  else if (text.find('.') != std::string::npos) sep = '.';
  std::vector<std::string> parts;
  if (sep) {
    size_t start = 0;
    for (;;) {
      const size_t end = text.find(sep, start);
      parts.push_back(trim(text.substr(start, end == std::string::npos ? std::string::npos : end - start)));
      if (end == std::string::npos) break;
      start = end + 1;
    }
  } else {
    parts.push_back(trim(text));
  }
  std::vector<std::string> out;
  for (auto& p : parts)
    if (!p.empty() && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
  return out;
}

PredictRequest parse_predict(const nlohmann::json& body, const std::string& model_id) {
  if (!body.is_object()) throw RequestError("INVALID_REQUEST", "the body must be a JSON object");
  if (!body.contains("model") || !body["model"].is_string())
    throw RequestError("INVALID_REQUEST", "\"model\" (a string) is required");
  if (!body.contains("image") || !body["image"].is_string())
    throw RequestError("INVALID_REQUEST", "\"image\" (a data URI or base64 string) is required");
  const std::string model = body["model"].get<std::string>();
  if (model != model_id) throw RequestError("MODEL_NOT_FOUND", "Model '" + model + "' not loaded");
  PredictRequest r;
  try {
    r.image = decode_image_field(body["image"].get<std::string>());
  } catch (const Error& e) {
    throw RequestError("INVALID_IMAGE", std::string("Failed to decode image: ") + e.what());
  }
  if (r.image.empty()) throw RequestError("INVALID_IMAGE", "Failed to decode image: it is empty");
  nlohmann::json params = nlohmann::json::object();
  if (body.contains("params") && !body["params"].is_null()) {
    params = body["params"];
    if (!params.is_object()) throw RequestError("INVALID_REQUEST", "\"params\" must be an object");
  }
  if (params.contains("conf_threshold")) {
    r.conf_threshold = number_field(params["conf_threshold"], "conf_threshold");
    if (r.conf_threshold < 0 || r.conf_threshold > 1)
      throw RequestError("INVALID_REQUEST", "conf_threshold must be in [0, 1]");
  }
  if (params.contains("epsilon_factor")) {
    r.shapes.epsilon_factor = number_field(params["epsilon_factor"], "epsilon_factor");
    if (r.shapes.epsilon_factor < 0 || r.shapes.epsilon_factor > 1)
      throw RequestError("INVALID_REQUEST", "epsilon_factor must be in [0, 1]");
  }
  if (params.contains("show_masks")) r.shapes.polygons = bool_field(params["show_masks"], "show_masks");
  if (params.contains("show_boxes")) r.shapes.rectangles = bool_field(params["show_boxes"], "show_boxes");
  if (params.contains("text_prompt") && !params["text_prompt"].is_null()) {
    if (!params["text_prompt"].is_string()) throw RequestError("INVALID_REQUEST", "text_prompt must be a string");
    const std::string text = params["text_prompt"].get<std::string>();
    if (text.size() > kMaxTextBytes)
      throw RequestError("INVALID_REQUEST", "text_prompt is longer than " + std::to_string(kMaxTextBytes) + " bytes");
    r.concepts = split_concepts(text);
  }
  if (params.contains("marks") && !params["marks"].is_null()) {
    const auto& marks = params["marks"];
    if (!marks.is_array()) throw RequestError("INVALID_REQUEST", "marks must be an array");
    for (size_t i = 0; i < marks.size(); ++i) {
      const auto& m = marks[i];
      const std::string at = "marks[" + std::to_string(i) + "]";
      if (!m.is_object() || !m.contains("type") || !m["type"].is_string() || !m.contains("data") || !m["data"].is_array())
        throw RequestError("INVALID_REQUEST", at + " must be {\"type\", \"data\", \"label\"}");
      const std::string type = m["type"].get<std::string>();
      const auto& d = m["data"];
      if (type == "point") {
        if (d.size() != 2) throw RequestError("INVALID_REQUEST", at + ": a point's data is [x, y]");
        r.points.push_back({number_field(d[0], at + ".data"), number_field(d[1], at + ".data"), mark_label(m, i)});
      } else if (type == "rectangle") {
        if (d.size() != 4) throw RequestError("INVALID_REQUEST", at + ": a rectangle's data is [x1, y1, x2, y2]");
        Box b{number_field(d[0], at + ".data"), number_field(d[1], at + ".data"), number_field(d[2], at + ".data"),
              number_field(d[3], at + ".data"), mark_label(m, i)};
        if (b.x0 > b.x1) std::swap(b.x0, b.x1);  // the client draws in any direction
        if (b.y0 > b.y1) std::swap(b.y0, b.y1);
        r.rectangles.push_back(b);
      } else {
        throw RequestError("INVALID_REQUEST", at + ": type must be \"point\" or \"rectangle\", not \"" + type + "\"");
      }
    }
    if (r.points.size() > kMaxVideoPoints)
      throw RequestError("INVALID_REQUEST", "more than " + std::to_string(kMaxVideoPoints) + " points");
  }
  return r;
}

nlohmann::json run_predict(Model& model, ImageCache& cache, const PredictRequest& req, bool* cache_hit) {
  Image image;
  try {
    image = decode_image(req.image.data(), req.image.size(), "the request's image");
  } catch (const Error& e) {
    throw RequestError("INVALID_IMAGE", std::string("Failed to decode image: ") + e.what());
  }
  const int W = image.width, H = image.height;
  auto inside = [&](float x, float y) { return x >= 0 && y >= 0 && x <= W && y <= H; };
  for (const auto& p : req.points)
    if (!inside(p.x, p.y))
      throw RequestError("INVALID_REQUEST", "point (" + std::to_string(p.x) + ", " + std::to_string(p.y) +
                                                ") is outside the " + std::to_string(W) + "x" + std::to_string(H) + " image");
  for (const auto& b : req.rectangles)
    if (!inside(b.x0, b.y0) || !inside(b.x1, b.y1) || !(b.x1 > b.x0) || !(b.y1 > b.y0))
      throw RequestError("INVALID_REQUEST", "rectangle [" + std::to_string(b.x0) + ", " + std::to_string(b.y0) + ", " +
                                                std::to_string(b.x1) + ", " + std::to_string(b.y1) +
                                                "] is empty or outside the " + std::to_string(W) + "x" +
                                                std::to_string(H) + " image");
  const bool interactive = !req.points.empty();
  if (interactive) {
    int positive_boxes = 0;
    for (const auto& b : req.rectangles) {
      if (!b.positive) throw RequestError("INVALID_REQUEST", "with points, a rectangle must be positive (label 1)");
      ++positive_boxes;
    }
    if (positive_boxes > 1) throw RequestError("INVALID_REQUEST", "with points, at most one rectangle");
  } else if (static_cast<int>(req.rectangles.size()) > model.manifest().max_boxes) {
    throw RequestError("INVALID_REQUEST", "at most " + std::to_string(model.manifest().max_boxes) +
                                              " rectangles (exemplar boxes) per request");
  }
  nlohmann::json shapes = nlohmann::json::array();
  if (!interactive && req.rectangles.empty() && req.concepts.empty()) {
    if (cache_hit) *cache_hit = false;
    return {{"shapes", shapes}, {"description", ""}};
  }
  try {
    const std::string key = image_key(req.image);
    ImageState state = cache.get(key, [&] { return model.encode(image); }, cache_hit);
    auto add = [&](const std::vector<Instance>& found, const std::string& label) {
      for (const auto& inst : found)
        for (auto& s : instance_shapes(inst, label, req.shapes)) shapes.push_back(std::move(s));
    };
    const std::string label = req.concepts.size() == 1 ? req.concepts[0] : "AUTOLABEL_OBJECT";
    if (interactive) {
      InteractivePrompt p;
      p.points = req.points;
      if (!req.rectangles.empty()) p.box = req.rectangles[0];
      add(model.segment_interactive(state, p), label);
    } else if (!req.rectangles.empty()) {
      ConceptPrompt p;
      p.boxes = req.rectangles;
      p.threshold = req.conf_threshold;
      add(model.segment(state, p), label);
    } else {
      for (const auto& concept : req.concepts) {
        ConceptPrompt p;
        p.text = concept;
        p.threshold = req.conf_threshold;
        add(model.segment(state, p), concept);
      }
    }
  } catch (const RequestError&) {
    throw;
  } catch (const std::exception& e) {
    throw RequestError("INFERENCE_ERROR", e.what());
  }
  return {{"shapes", shapes}, {"description", ""}};
}

}  // namespace sam3::serve
