// One exception type for every user-facing failure. The API catches nothing
// itself; the CLI prints what() and exits 1. Nothing calls abort().
#pragma once

#include <stdexcept>
#include <string>

namespace sam3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace sam3
