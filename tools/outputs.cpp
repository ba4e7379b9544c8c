#include "outputs.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "sam3/rle.h"

namespace sam3::cli {
namespace {

// A fixed palette, so the same instance index gets the same colour in every run.
const unsigned char kPalette[8][3] = {{230, 25, 75}, {60, 180, 75},  {255, 225, 25}, {0, 130, 200},
                                      {245, 130, 48}, {145, 30, 180}, {70, 240, 240}, {240, 50, 230}};

}  // namespace

// the files of one result, into an existing folder
void write_files(const std::string& out_dir, const Image& image, const std::vector<Instance>& instances,
                 const nlohmann::json& prompt);

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error("cannot write " + path + ": " + std::strerror(errno));
  f << text;
  f.close();
  if (!f) throw Error("cannot write " + path + " (disk full or file too large?)");
}

void write_staged(const std::string& out_dir, const std::function<void(const std::string&)>& write) {
  namespace fs = std::filesystem;
  fs::path out(out_dir);
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  const fs::path staging = out.parent_path() / (out.filename().string() + ".partial-" + std::to_string(getpid()));
  std::error_code ec;
  try {
    fs::remove_all(staging, ec);
    fs::create_directories(staging, ec);
    if (ec) throw Error("cannot create " + staging.string() + ": " + ec.message());
    write(staging.string());
    fs::create_directories(out, ec);
    if (ec) throw Error("cannot create output directory " + out.string() + ": " + ec.message());
    for (const auto& entry : fs::directory_iterator(staging)) {
      const fs::path dst = out / entry.path().filename();
      fs::remove_all(dst, ec);
      fs::rename(entry.path(), dst, ec);
      if (ec) throw Error("cannot move results into " + out.string() + ": " + ec.message());
    }
    fs::remove_all(staging, ec);
  } catch (...) {
    fs::remove_all(staging, ec);
    throw;
  }
}

std::string write_outputs(const std::string& out_dir, const Image& image,
                          const std::vector<Instance>& instances, const nlohmann::json& prompt) {
  write_staged(out_dir, [&](const std::string& dir) {
    write_files(dir, image, instances, prompt);
  });
  return out_dir + "/result.json";
}

void write_files(const std::string& out_dir, const Image& image, const std::vector<Instance>& instances,
                 const nlohmann::json& prompt) {
  std::vector<float> overlay(image.rgb.begin(), image.rgb.end());
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < instances.size(); ++i) {
    const Instance& inst = instances[i];
    char name[32];
    std::snprintf(name, sizeof(name), "mask_%03zu.png", i);
    std::vector<uint8_t> png(inst.mask.size());
    size_t area = 0;
    for (size_t p = 0; p < inst.mask.size(); ++p) {
      png[p] = inst.mask[p] ? 255 : 0;
      area += inst.mask[p] ? 1 : 0;
      if (inst.mask[p])
        for (int c = 0; c < 3; ++c)
          overlay[p * 3 + c] = 0.5f * overlay[p * 3 + c] + 0.5f * kPalette[i % 8][c];
    }
    save_png(out_dir + "/" + name, inst.width, inst.height, 1, png.data());
    list.push_back({{"id", i},
                    {"score", inst.score},
                    {"box", inst.box},
                    {"area", area},
                    {"mask_file", name},
                    {"segmentation",
                     {{"size", {inst.height, inst.width}},
                      {"counts", rle_encode(inst.mask.data(), inst.height, inst.width)}}}});
  }
  std::vector<uint8_t> over(overlay.size());
  for (size_t p = 0; p < overlay.size(); ++p)
    over[p] = static_cast<uint8_t>(overlay[p] < 0 ? 0 : overlay[p] > 255 ? 255 : overlay[p]);
  save_png(out_dir + "/overlay.png", image.width, image.height, 3, over.data());
  nlohmann::json result = {{"image", {{"width", image.width}, {"height", image.height}}},
                           {"prompt", prompt},
                           {"instances", list}};
  write_text_file(out_dir + "/result.json", result.dump(2) + "\n");
}

}  // namespace sam3::cli
