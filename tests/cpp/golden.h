// Helpers shared by the golden-data tests (files written by tests/cpp/data/gen_*.py).
#pragma once

#include <cstdint>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace golden {

// tests/cpp/data/<file>, parsed once per test binary.
inline nlohmann::json load(const std::string& file, const std::string& generator) {
  std::ifstream f(std::string(SAM3_TEST_DATA_DIR) + "/" + file);
  if (!f) throw std::runtime_error("missing " + file + "; run " + generator);
  return nlohmann::json::parse(f);
}

inline std::vector<float> floats(const nlohmann::json& j) {
  std::vector<float> v;
  v.reserve(j.size());
  for (const auto& x : j) v.push_back(static_cast<float>(x.get<double>()));
  return v;
}

// The generators' hash_map: the same integer hash and double ops, so bit-identical
// inputs without storing them.
inline std::vector<float> hash_map(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (size_t k = 0; k < n; ++k) {
    const uint64_t h = ((k + seed) * 2654435761ull) % 4294967296ull;
    v[k] = static_cast<float>(static_cast<double>(h) / 4294967296.0 * 20.0 - 10.0);
  }
  return v;
}

// golden.json (an index) + golden.bin (byte ranges it names) in one data folder. Empty
// when the files are missing, so a test can report that instead of a crash during
// test registration.
struct Blob {
  nlohmann::json index;
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> slice(const nlohmann::json& range) const {
    const size_t offset = range.at(0), size = range.at(1);
    if (offset + size > bytes.size()) throw std::runtime_error("golden range out of golden.bin");
    return {bytes.begin() + offset, bytes.begin() + offset + size};
  }
};

inline Blob load_blob(const std::string& dir) {
  Blob b;
  std::ifstream in(dir + "golden.json");
  if (in) b.index = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  std::ifstream bin(dir + "golden.bin", std::ios::binary);
  b.bytes.assign(std::istreambuf_iterator<char>(bin), std::istreambuf_iterator<char>());
  return b;
}

}  // namespace golden
