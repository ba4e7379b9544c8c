// `sam3 serve`: an HTTP server speaking the X-AnyLabeling-Server contract (docs/serve.md).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace sam3::cli {

struct ServeArgs {
  std::string bundle, device = "cpu", host = "127.0.0.1", token, model_id = "segment_anything_3";
  int port = 8000, workers = 1, queue = 16, cache = 4, max_sessions = 4;
  double timeout_s = 300, max_body_mb = 64;
};

CLI::App* add_serve_command(CLI::App& app, ServeArgs& args);
int run_serve(const ServeArgs& args);

}  // namespace sam3::cli
