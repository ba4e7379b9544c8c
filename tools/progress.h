// A progress line on stderr for the long subcommands (track, label): a bar redrawn in place
// on a terminal, a line every 10% otherwise; rate and time left.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace sam3::cli {

class Progress {
 public:
  Progress(const char* what, const char* unit, int total) : what_(what), unit_(unit), total_(total), tty_(isatty(2)) {}
  void step() {
    ++done_;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const double rate = s > 0 ? done_ / s : 0;
    if (!tty_ && done_ % std::max(1, total_ / 10) != 0 && done_ != total_) return;
    const int width = 30, filled = total_ > 0 ? std::min(width, width * done_ / total_) : width;
    std::string eta;
    if (rate > 0 && done_ < total_) {
      const int left = static_cast<int>((total_ - done_) / rate + 0.5);
      eta = ", " + (left >= 3600 ? std::to_string(left / 3600) + "h" : "") +
            (left >= 60 ? std::to_string(left / 60 % 60) + "m" : "") + std::to_string(left % 60) + "s left";
    }
    std::fprintf(stderr, "%s%s [%s%s] %d/%d %s, %.2f %s/s%s%s", tty_ ? "\r" : "", what_, std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), done_, total_, unit_, rate, unit_, eta.c_str(),
                 tty_ ? "\x1b[K" : "\n");
    std::fflush(stderr);
  }
  void finish() {
    if (tty_ && done_) std::fprintf(stderr, "\n");
  }

 private:
  const char *what_, *unit_;
  int total_, done_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

}  // namespace sam3::cli
