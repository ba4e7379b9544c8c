#include "label.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "outputs.h"
#include "progress.h"
#include "sam3/label.h"
#include "sam3/sam3.h"

namespace sam3::cli {

namespace fs = std::filesystem;
using nlohmann::json;

CLI::App* add_label_command(CLI::App& app, LabelArgs& a) {
  auto* l = app.add_subcommand("label", "label a folder or list of images with classes, into one COCO file");
  l->add_option("--bundle", a.bundle, "bundle directory")->required();
  l->add_option("--images", a.images, "a folder of .jpg/.png images, or a text file listing one path per line")
      ->required();
  l->add_option("--classes", a.classes, "comma-separated class names, each a text prompt, e.g. \"cat,dog,person\"")
      ->required();
  l->add_option("--out", a.out, "the COCO instances JSON to write")->required();
  l->add_option("--threshold", a.threshold, "detection score threshold")->default_val(0.5)->check(CLI::Range(0.0, 1.0));
  l->add_flag("--resume", a.resume, "continue an interrupted run (OUT.partial) instead of starting over");
  l->add_option("--device", a.device, "cpu or cuda; must match the bundle")->default_val("cpu");
  return l;
}

int run_label(const LabelArgs& a) {
  const std::vector<std::string> classes = parse_classes(a.classes);
  if (classes.empty()) throw Error("--classes gives no class name");
  for (const auto& c : classes)
    if (c.size() > kMaxTextBytes) throw Error("class name longer than " + std::to_string(kMaxTextBytes) + " bytes");
  const auto images = list_images(a.images);
  const std::string partial = a.out + ".partial";
  const json header = {{"sam3_label", 1}, {"bundle", fs::absolute(a.bundle).lexically_normal().string()},
                       {"classes", classes}, {"threshold", a.threshold}};

  // what an interrupted run already did: one JSON line per image after the header line
  std::map<std::string, std::string> done;
  std::error_code ec;
  if (a.resume && fs::exists(partial, ec)) {
    std::ifstream f(partial);
    std::string line;
    if (!std::getline(f, line)) throw Error(partial + " is empty: start again without --resume");
    json h;
    try {
      h = json::parse(line);
    } catch (const std::exception&) {
      throw Error(partial + " is not a sam3 label partial file");
    }
    if (h != header)
      throw Error(partial + " was made with other options (" + h.dump() + "): start again without --resume");
    while (std::getline(f, line)) {
      try {
        const json r = json::parse(line);
        done[r.at("file_name").get<std::string>()] = line;
      } catch (const std::exception&) {
        // the line being written when the run stopped: that image is labelled again
      }
    }
    std::fprintf(stderr, "sam3 label: resuming, %zu of %zu images already labelled\n", done.size(), images.size());
  } else if (a.resume) {
    std::fprintf(stderr, "sam3 label: nothing to resume (%s not found), starting\n", partial.c_str());
  }

  Model model(a.bundle, a.device);
  FILE* pf = std::fopen(partial.c_str(), a.resume && !done.empty() ? "ab" : "wb");
  if (!pf) throw Error("cannot write " + partial);
  auto append = [&](const std::string& line) {
    if (std::fputs((line + "\n").c_str(), pf) < 0 || std::fflush(pf) != 0) {
      std::fclose(pf);
      throw Error("cannot write " + partial + " (disk full?)");
    }
  };
  if (done.empty()) {
    // a resumed file whose records all failed to parse still has its header
    if (!(a.resume && fs::file_size(partial, ec) > 0)) append(header.dump());
  }
  Progress progress("labelling", "images", static_cast<int>(images.size() - std::min(images.size(), done.size())));
  std::vector<std::string> records;
  for (const auto& [path, name] : images) {
    auto it = done.find(name);
    if (it != done.end()) {
      records.push_back(it->second);
      continue;
    }
    std::string rec = label_image_json(model, path, name, classes, static_cast<float>(a.threshold));
    const json r = json::parse(rec);
    if (r.contains("error"))  // recorded in the COCO file's failed_images, not fatal
      std::fprintf(stderr, "%ssam3 label: skipped %s: %s\n", isatty(2) ? "\n" : "", name.c_str(),
                   r["error"].get<std::string>().c_str());
    append(rec);
    records.push_back(std::move(rec));
    progress.step();
  }
  progress.finish();
  std::fclose(pf);
  const json info = {{"description", "sam3 label"}, {"classes", classes}, {"threshold", a.threshold},
                     {"bundle", a.bundle}, {"config", model.manifest().config_name},
                     {"weights", model.manifest().weights_source}};
  const std::string doc = coco_document(classes, records, info.dump());
  // the finished file appears whole or not at all; the partial goes once it is there
  const std::string tmp = a.out + ".writing";
  write_text_file(tmp, doc + "\n");
  fs::rename(tmp, a.out, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error("cannot write " + a.out + ": " + ec.message());
  }
  fs::remove(partial, ec);
  const json d = json::parse(doc);
  std::printf("%zu image(s), %zu annotation(s), %zu failed; wrote %s\n", d["images"].size(), d["annotations"].size(),
              d["failed_images"].size(), a.out.c_str());
  return 0;
}

}  // namespace sam3::cli
