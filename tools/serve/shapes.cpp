#include "shapes.h"

#include <opencv2/imgproc.hpp>

#include "sam3/rle.h"

namespace sam3::serve {

std::vector<std::array<float, 2>> mask_polygon(const std::vector<uint8_t>& mask, int width, int height,
                                               double epsilon_factor) {
  std::vector<std::array<float, 2>> out;
  if (width <= 0 || height <= 0 || mask.size() != static_cast<size_t>(width) * height) return out;
  cv::Mat m(height, width, CV_8UC1);
  for (int y = 0; y < height; ++y) {
    uint8_t* row = m.ptr<uint8_t>(y);
    for (int x = 0; x < width; ++x) row[x] = mask[static_cast<size_t>(y) * width + x] ? 1 : 0;
  }
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(m, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  if (contours.empty()) return out;
  size_t best = 0;
  double best_area = -1;
  for (size_t i = 0; i < contours.size(); ++i) {
    const double a = cv::contourArea(contours[i]);
    if (a > best_area) {  // first of equals, as Python's max()
      best_area = a;
      best = i;
    }
  }
  std::vector<cv::Point> poly = contours[best];
  if (epsilon_factor > 0) {
    std::vector<cv::Point> approx;
    cv::approxPolyDP(contours[best], approx, epsilon_factor * cv::arcLength(contours[best], true), true);
    poly = std::move(approx);
  }
  for (const auto& p : poly) out.push_back({static_cast<float>(p.x), static_cast<float>(p.y)});
  if (!out.empty() && out.front() != out.back()) out.push_back(out.front());
  return out;
}

nlohmann::json make_shape(const std::string& label, const char* type, nlohmann::json points, float score,
                          const nlohmann::json& rle, const nlohmann::json& group_id) {
  return {{"label", label},         {"shape_type", type}, {"points", std::move(points)},
          {"score", score},         {"attributes", nlohmann::json::object()},
          {"description", nullptr}, {"difficult", false}, {"direction", 0},
          {"flags", nullptr},       {"group_id", group_id}, {"kie_linking", nlohmann::json::array()},
          {"mask", rle}};
}

nlohmann::json mask_rle(const std::vector<uint8_t>& mask, int width, int height) {
  return {{"size", {height, width}}, {"counts", rle_encode(mask.data(), height, width)}};
}

nlohmann::json instance_shapes(const Instance& inst, const std::string& label, const ShapeOptions& opt) {
  nlohmann::json out = nlohmann::json::array();
  const nlohmann::json rle = mask_rle(inst.mask, inst.width, inst.height);
  if (opt.polygons) {
    auto poly = mask_polygon(inst.mask, inst.width, inst.height, opt.epsilon_factor);
    if (!poly.empty()) out.push_back(make_shape(label, "polygon", poly, inst.score, rle));
  }
  if (opt.rectangles) {
    float x0 = inst.box[0], y0 = inst.box[1], x1 = inst.box[2], y1 = inst.box[3];
    if (x0 > x1) std::swap(x0, x1);
    if (y0 > y1) std::swap(y0, y1);
    nlohmann::json pts = {{x0, y0}, {x1, y0}, {x1, y1}, {x0, y1}};
    out.push_back(make_shape(label, "rectangle", pts, inst.score, rle));
  }
  return out;
}

}  // namespace sam3::serve
