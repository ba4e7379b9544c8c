// Units of `sam3 serve` that need no model: base64 (RFC 4648 test vectors), the concept
// split of the reference server, mask polygons on shapes whose outline is known, the work
// queue's 503 and timeout rules, the encoded-image cache, request validation.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "serve/base64.h"
#include "serve/image_cache.h"
#include "serve/predict.h"
#include "serve/shapes.h"
#include "serve/work_queue.h"

using namespace sam3;
using namespace sam3::serve;

namespace {
std::string str(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }
}  // namespace

TEST(Base64, Rfc4648Vectors) {
  const std::pair<const char*, const char*> v[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                   {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                                                   {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, coded] : v) {
    EXPECT_EQ(str(base64_decode(coded)), plain) << coded;
    EXPECT_EQ(base64_encode(reinterpret_cast<const uint8_t*>(plain), std::strlen(plain)), coded);
  }
  EXPECT_EQ(str(base64_decode("Zm9v\nYmFy\r\n")), "foobar");  // line breaks skipped
}

TEST(Base64, RejectsBadInput) {
  for (const char* bad : {"Zm9", "Zm9v!", "Zg=a", "====", "Z===", "Zm9v-_==", "Zm=v"})
    EXPECT_THROW(base64_decode(bad), Error) << bad;
}

TEST(Base64, DataUri) {
  EXPECT_EQ(str(decode_image_field("data:image/png;base64,Zm9vYmFy")), "foobar");
  EXPECT_EQ(str(decode_image_field("Zm9vYmFy")), "foobar");
  EXPECT_THROW(decode_image_field("data:image/png,Zm9vYmFy"), Error);  // not base64
  EXPECT_THROW(decode_image_field("data:image/png;base64"), Error);    // no comma
}

TEST(Concepts, SplitAsTheReferenceServer) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_concepts("cat, dog ,cat"), (V{"cat", "dog"}));
  EXPECT_EQ(split_concepts("red car. blue car"), (V{"red car", "blue car"}));
  EXPECT_EQ(split_concepts("a, b. c"), (V{"a", "b. c"}));  // ',' wins over '.'
  EXPECT_EQ(split_concepts("  person  "), (V{"person"}));
  EXPECT_EQ(split_concepts(" , ,"), V{});
  EXPECT_EQ(split_concepts(""), V{});
}

TEST(Polygon, RectangleHasItsFourCorners) {
  const int W = 20, H = 10;
  std::vector<uint8_t> m(W * H, 0);
  for (int y = 2; y <= 6; ++y)
    for (int x = 3; x <= 12; ++x) m[y * W + x] = 1;
  auto p = mask_polygon(m, W, H, 0.001);
  // outer pixel-centre contour of a filled rectangle, counter-clockwise from the top left
  // as cv2.findContours gives it, closed
  std::vector<std::array<float, 2>> want = {{3, 2}, {3, 6}, {12, 6}, {12, 2}, {3, 2}};
  EXPECT_EQ(p, want);
}

TEST(Polygon, LargestOfTwoBlobsAndEmpty) {
  const int W = 30, H = 30;
  std::vector<uint8_t> m(W * H, 0);
  for (int y = 1; y <= 3; ++y)
    for (int x = 1; x <= 3; ++x) m[y * W + x] = 1;  // small
  for (int y = 10; y <= 25; ++y)
    for (int x = 12; x <= 20; ++x) m[y * W + x] = 1;  // large
  auto p = mask_polygon(m, W, H, 0.0);
  ASSERT_FALSE(p.empty());
  for (const auto& q : p) {
    EXPECT_GE(q[0], 12);
    EXPECT_GE(q[1], 10);
  }
  EXPECT_TRUE(mask_polygon(std::vector<uint8_t>(W * H, 0), W, H, 0.001).empty());
}

TEST(Polygon, SimplificationKeepsVerticesOnTheOutline) {
  // a disc: every vertex is a foreground pixel with a background 4-neighbour, and a larger
  // epsilon gives fewer vertices
  const int W = 64, H = 64;
  std::vector<uint8_t> m(W * H, 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) m[y * W + x] = (x - 32) * (x - 32) + (y - 30) * (y - 30) <= 20 * 20;
  auto fine = mask_polygon(m, W, H, 0.0), coarse = mask_polygon(m, W, H, 0.02);
  EXPECT_GT(fine.size(), coarse.size());
  EXPECT_GE(coarse.size(), 5u);
  for (const auto& q : coarse) {
    const int x = static_cast<int>(q[0]), y = static_cast<int>(q[1]);
    ASSERT_TRUE(m[y * W + x]);
    EXPECT_TRUE(!m[y * W + x - 1] || !m[y * W + x + 1] || !m[(y - 1) * W + x] || !m[(y + 1) * W + x]);
  }
  EXPECT_EQ(coarse.front(), coarse.back());
}

TEST(WorkQueue, FullWhenWorkersAndQueueAreTaken) {
  WorkQueue q(1, 1);
  std::atomic<bool> release{false};
  std::atomic<int> ran{0};
  auto slow = [&] {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++ran;
  };
  std::thread a([&] { EXPECT_EQ(q.run(slow, std::chrono::seconds(30)), WorkQueue::Status::Done); });
  while (q.busy() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::thread b([&] { EXPECT_EQ(q.run(slow, std::chrono::seconds(30)), WorkQueue::Status::Done); });
  while (q.waiting() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(q.run([&] { ++ran; }, std::chrono::seconds(30)), WorkQueue::Status::Full);
  release = true;
  a.join();
  b.join();
  EXPECT_EQ(ran, 2);
  EXPECT_EQ(q.run([&] { ++ran; }, std::chrono::seconds(30)), WorkQueue::Status::Done);
  EXPECT_EQ(ran, 3);
}

TEST(WorkQueue, TimeoutDropsAWaitingJobAndErrorsPropagate) {
  WorkQueue q(1, 4);
  std::atomic<bool> release{false};
  std::atomic<int> late{0};
  std::thread a([&] {
    q.run([&] { while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1)); },
          std::chrono::seconds(30));
  });
  while (q.busy() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(q.run([&] { ++late; }, std::chrono::milliseconds(20)), WorkQueue::Status::TimedOut);
  release = true;
  a.join();
  EXPECT_EQ(q.run([] {}, std::chrono::seconds(30)), WorkQueue::Status::Done);
  EXPECT_EQ(late, 0);  // the timed-out job never ran
  EXPECT_THROW(q.run([] { throw Error("boom"); }, std::chrono::seconds(30)), Error);
  q.stop();
  EXPECT_EQ(q.run([] {}, std::chrono::seconds(1)), WorkQueue::Status::Stopped);
}

TEST(ImageCache, HitsEvictionAndErrors) {
  ImageCache c(2);
  int encodes = 0;
  auto enc = [&] {
    ++encodes;
    return ImageState{};
  };
  bool hit = true;
  c.get("a", enc, &hit);
  EXPECT_FALSE(hit);
  c.get("a", enc, &hit);
  EXPECT_TRUE(hit);
  c.get("b", enc);
  c.get("a", enc);  // a is now the most recent
  c.get("c", enc);  // evicts b
  c.get("b", enc, &hit);
  EXPECT_FALSE(hit);
  EXPECT_EQ(encodes, 4);
  EXPECT_THROW(c.get("d", [&]() -> ImageState { throw Error("bad"); }), Error);
  c.get("d", enc, &hit);  // the failure was not kept
  EXPECT_FALSE(hit);
  EXPECT_EQ(c.stats().entries, 2u);
}

TEST(ImageCache, OneEncodeForConcurrentRequests) {
  ImageCache c(4);
  std::atomic<int> encodes{0};
  std::vector<std::thread> t;
  for (int i = 0; i < 8; ++i)
    t.emplace_back([&] {
      c.get("same", [&] {
        ++encodes;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        return ImageState{};
      });
    });
  for (auto& th : t) th.join();
  EXPECT_EQ(encodes, 1);
  EXPECT_EQ(c.stats().hits, 7u);
}

TEST(ParsePredict, ErrorsNameTheField) {
  using nlohmann::json;
  const std::string img = "Zm9vYmFy";
  auto code = [&](const json& body) {
    try {
      parse_predict(body, "m");
    } catch (const RequestError& e) {
      return e.code;
    }
    return std::string("OK");
  };
  EXPECT_EQ(code({{"model", "m"}, {"image", img}}), "OK");
  EXPECT_EQ(code(json::array()), "INVALID_REQUEST");
  EXPECT_EQ(code({{"image", img}}), "INVALID_REQUEST");
  EXPECT_EQ(code({{"model", "m"}}), "INVALID_REQUEST");
  EXPECT_EQ(code({{"model", 3}, {"image", img}}), "INVALID_REQUEST");
  EXPECT_EQ(code({{"model", "other"}, {"image", img}}), "MODEL_NOT_FOUND");
  EXPECT_EQ(code({{"model", "m"}, {"image", "!!"}}), "INVALID_IMAGE");
  EXPECT_EQ(code({{"model", "m"}, {"image", ""}}), "INVALID_IMAGE");
  auto with = [&](json params) { return code({{"model", "m"}, {"image", img}, {"params", params}}); };
  EXPECT_EQ(with({{"conf_threshold", 1.5}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"conf_threshold", "high"}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"epsilon_factor", -1}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"text_prompt", 5}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"text_prompt", std::string(5000, 'a')}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"marks", "x"}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"marks", {{{"type", "circle"}, {"data", {1, 2}}}}}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"marks", {{{"type", "point"}, {"data", {1}}}}}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"marks", {{{"type", "point"}, {"data", {1, "y"}}}}}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"marks", {{{"type", "point"}, {"data", {1, 2}}, {"label", 7}}}}}), "INVALID_REQUEST");
  EXPECT_EQ(with({{"marks", {{{"type", "rectangle"}, {"data", {1, 2, 3}}}}}}), "INVALID_REQUEST");
  PredictRequest r = parse_predict(
      {{"model", "m"}, {"image", img},
       {"params", {{"text_prompt", "cat,dog"}, {"marks", {{{"type", "rectangle"}, {"data", {9, 8, 1, 2}}, {"label", 0}}}}}}},
      "m");
  ASSERT_EQ(r.rectangles.size(), 1u);
  EXPECT_EQ(r.rectangles[0].x0, 1);  // drawn right to left, bottom to top: normalised
  EXPECT_EQ(r.rectangles[0].y1, 8);
  EXPECT_FALSE(r.rectangles[0].positive);
  EXPECT_EQ(r.concepts.size(), 2u);
}

TEST(WorkQueue, SubmitDoesNotWaitAndIsBounded) {
  WorkQueue q(1, 0);
  std::atomic<bool> release{false};
  std::atomic<int> ran{0};
  EXPECT_EQ(q.submit([&] {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++ran;
  }), WorkQueue::Status::Done);
  while (q.busy() != 1) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(q.submit([&] { ++ran; }), WorkQueue::Status::Full);  // the one worker is busy, no queue
  release = true;
  while (q.busy() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(ran, 1);
}
