// What the routes of `sam3 serve` share: the options, the model, the work queue, the token
// check, and the contract's JSON answers.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "sam3/sam3.h"
#include "serve.h"
#include "work_queue.h"

namespace sam3::serve {

inline nlohmann::json error_body(const std::string& code, const std::string& message) {
  return {{"success", false}, {"error", {{"code", code}, {"message", message}}}};
}

inline void send(httplib::Response& res, const nlohmann::json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
}

inline nlohmann::json queue_full_body() {
  const char* msg = "Task queue is full, please try again later";
  return {{"detail", msg}, {"success", false}, {"error", {{"code", "QUEUE_FULL"}, {"message", msg}}}};
}

struct Context {
  const cli::ServeArgs& args;
  Model& model;
  WorkQueue& work;
  std::chrono::milliseconds timeout;
  // false after answering UNAUTHORIZED
  std::function<bool(const httplib::Request&, httplib::Response&)> authorized;
  std::atomic<uint64_t> served{0}, rejected{0}, timed_out{0};
};

// Parses the body as a JSON object with a "model" string naming ours; false after answering
// (422 for a body that is not such JSON, MODEL_NOT_FOUND for another model).
bool parse_body(const httplib::Request& req, httplib::Response& res, const std::string& model_id,
                nlohmann::json& body);

}  // namespace sam3::serve
