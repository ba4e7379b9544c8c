// Argument parsing helpers shared by the sam3 subcommands.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "sam3/error.h"

namespace sam3::cli {

inline std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) parts.push_back(item);
  return parts;
}

inline float number(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    float v = std::stof(s, &used);
    if (used == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error("bad " + what + ": '" + s + "' is not a number");
}

inline int integer(const std::string& s, const std::string& what) {
  try {
    size_t used = 0;
    long v = std::stol(s, &used);
    if (used == s.size() && v >= -2147483647L && v <= 2147483647L) return static_cast<int>(v);
  } catch (const std::exception&) {
  }
  throw Error("bad " + what + ": '" + s + "' is not an integer");
}

}  // namespace sam3::cli
