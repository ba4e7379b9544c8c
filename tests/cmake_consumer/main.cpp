// Links against an installed libsam3 and calls into it: prints the error for a missing bundle.
#include <cstdio>

#include "sam3/sam3.h"

int main(int argc, char** argv) {
  try {
    sam3::Model model(argc > 1 ? argv[1] : "/nonexistent");
    std::printf("loaded %s\n", model.manifest().config_name.c_str());
  } catch (const sam3::Error& e) {
    std::printf("sam3::Error: %s\n", e.what());
  }
  return 0;
}
