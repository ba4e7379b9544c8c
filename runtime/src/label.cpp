#include "sam3/label.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "sam3/image.h"
#include "sam3/rle.h"

namespace sam3 {

using nlohmann::json;
namespace fs = std::filesystem;

std::vector<std::string> parse_classes(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t end = text.find(',', start);
    std::string c = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    const size_t a = c.find_first_not_of(" \t\r\n");
    c = a == std::string::npos ? "" : c.substr(a, c.find_last_not_of(" \t\r\n") - a + 1);
    if (!c.empty() && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> list_images(const std::string& images) {
  std::vector<std::pair<std::string, std::string>> out;
  std::error_code ec;
  if (fs::is_directory(images, ec)) {
    for (const auto& e : fs::directory_iterator(images, ec)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if ((ext == ".jpg" || ext == ".jpeg" || ext == ".png") && !fs::is_directory(e.path(), ec))
        out.push_back({e.path().string(), e.path().filename().string()});
    }
    if (ec) throw Error("cannot list " + images + ": " + ec.message());
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
    if (out.empty()) throw Error("no .jpg, .jpeg or .png files in " + images);
    return out;
  }
  std::ifstream f(images);
  if (!f) throw Error("--images " + images + ": not a folder or a readable list file");
  const fs::path base = fs::path(images).parent_path();
  std::string line;
  std::set<std::string> seen;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t a = line.find_first_not_of(" \t");
    if (a == std::string::npos || line[a] == '#') continue;
    line = line.substr(a, line.find_last_not_of(" \t") - a + 1);
    if (!seen.insert(line).second) throw Error("--images " + images + " lists " + line + " twice");
    const fs::path p(line);
    out.push_back({(p.is_absolute() ? p : base / p).string(), line});
  }
  if (out.empty()) throw Error("--images " + images + " lists no image");
  return out;
}

std::string label_image_json(Model& model, const std::string& path, const std::string& file_name,
                             const std::vector<std::string>& classes, float threshold) {
  json rec = {{"file_name", file_name}};
  try {
    const Image image = load_image(path);
    const ImageState state = model.encode(image);
    json anns = json::array();
    for (size_t c = 0; c < classes.size(); ++c) {
      ConceptPrompt p;
      p.text = classes[c];
      p.threshold = threshold;
      for (const Instance& inst : model.segment(state, p)) {
        int64_t area = 0;
        for (uint8_t v : inst.mask) area += v != 0;
        anns.push_back({{"category_id", c + 1},
                        {"segmentation", {{"size", {inst.height, inst.width}},
                                          {"counts", rle_encode(inst.mask.data(), inst.height, inst.width)}}},
                        {"area", area},
                        {"bbox", {inst.box[0], inst.box[1], inst.box[2] - inst.box[0], inst.box[3] - inst.box[1]}},
                        {"score", inst.score}});
      }
    }
    rec["width"] = image.width;
    rec["height"] = image.height;
    rec["annotations"] = std::move(anns);
  } catch (const std::exception& e) {
    rec = {{"file_name", file_name}, {"error", e.what()}};
  }
  return rec.dump();
}

std::string coco_document(const std::vector<std::string>& classes, const std::vector<std::string>& records,
                          const std::string& info_json) {
  json doc;
  try {
    doc["info"] = json::parse(info_json);
  } catch (const std::exception& e) {
    throw Error(std::string("coco_document: info is not JSON: ") + e.what());
  }
  json images = json::array(), annotations = json::array(), failed = json::array(), cats = json::array();
  for (size_t c = 0; c < classes.size(); ++c) cats.push_back({{"id", c + 1}, {"name", classes[c]}, {"supercategory", ""}});
  int64_t image_id = 0, ann_id = 0;
  for (const std::string& line : records) {
    json r;
    try {
      r = json::parse(line);
      if (r.contains("error")) {
        failed.push_back({{"file_name", r.at("file_name")}, {"error", r.at("error")}});
        continue;
      }
      ++image_id;
      images.push_back({{"id", image_id}, {"file_name", r.at("file_name")}, {"width", r.at("width")},
                        {"height", r.at("height")}});
      for (auto& a : r.at("annotations")) {
        json out = {{"id", ++ann_id}, {"image_id", image_id}, {"category_id", a.at("category_id")},
                    {"segmentation", a.at("segmentation")}, {"area", a.at("area")}, {"bbox", a.at("bbox")},
                    {"score", a.at("score")}, {"iscrowd", 0}};
        annotations.push_back(std::move(out));
      }
    } catch (const json::exception& e) {
      throw Error(std::string("coco_document: malformed image record: ") + e.what());
    }
  }
  doc["images"] = std::move(images);
  doc["annotations"] = std::move(annotations);
  doc["categories"] = std::move(cats);
  doc["failed_images"] = std::move(failed);
  return doc.dump();
}

}  // namespace sam3
