// The HTTP side of `sam3 serve`: routes, the token check, limits, the work queue and a
// clean stop on SIGTERM/SIGINT. Requests are parsed on the HTTP threads; everything that
// touches the model runs on the --workers threads, at most --queue waiting (then 503).
#include "serve.h"

#include <httplib.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "context.h"
#include "image_cache.h"
#include "predict.h"
#include "sam3/sam3.h"
#include "video_routes.h"
#include "work_queue.h"

namespace sam3::cli {

using nlohmann::json;
using serve::error_body;
using serve::RequestError;
using serve::send;

namespace {

std::string utc_now_iso() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

bool same_token(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

json model_info(const ServeArgs& a, const Manifest& m) {
  auto w = [](const char* name, json value = nullptr) { return json{{"name", name}, {"value", value}}; };
  return {{"display_name", "Segment Anything 3 (sam3, TVM " + m.config_name + ")"},
          {"batch_processing_mode", "text_prompt"},
          {"widgets",
           {w("edit_text"), w("button_send"), w("button_add_point"), w("button_remove_point"), w("add_pos_rect"),
            w("add_neg_rect"), w("button_run_rect"), w("button_clear"), w("button_finish_object"), w("input_conf"),
            w("edit_conf", 0.25), w("mask_fineness_slider", 10), w("mask_fineness_value_label"),
            w("toggle_preserve_existing_annotations", false)}},
          {"params",
           {{"bundle", a.bundle}, {"device", a.device}, {"config", m.config_name}, {"precision", m.precision},
            {"conf_threshold", 0.25}, {"show_boxes", true}, {"show_masks", true}, {"epsilon_factor", 0.001},
            {"max_exemplar_boxes", m.max_boxes}}}};
}

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeArgs& a) {
  auto* s = app.add_subcommand("serve", "serve a bundle over HTTP (the X-AnyLabeling-Server API; docs/serve.md)");
  s->add_option("--bundle", a.bundle, "bundle directory")->required();
  s->add_option("--host", a.host, "address to listen on (0.0.0.0: every interface)")->default_val("127.0.0.1");
  s->add_option("--port", a.port, "port (0: any free port, printed at start)")->default_val(8000)->check(CLI::Range(0, 65535));
  s->add_option("--workers", a.workers, "model calls running at once")->default_val(1)->check(CLI::Range(1, 64));
  s->add_option("--queue", a.queue, "requests waiting for a worker before 503")->default_val(16)->check(CLI::Range(0, 4096));
  s->add_option("--cache", a.cache, "encoded images kept (LRU by content hash; ~110 MB each at full size)")
      ->default_val(4)->check(CLI::Range(0, 1024));
  s->add_option("--timeout", a.timeout_s, "seconds a request may wait and run before it gets an error")
      ->default_val(300.0)->check(CLI::Range(0.001, 86400.0));
  s->add_option("--max-body-mb", a.max_body_mb, "largest request body, MB (larger: 413)")
      ->default_val(64.0)->check(CLI::Range(0.001, 2000.0));
  s->add_option("--token", a.token, "require this value in the Token header (also SAM3_SERVE_TOKEN)")
      ->envname("SAM3_SERVE_TOKEN");
  s->add_option("--max-sessions", a.max_sessions, "video sessions kept (the least recently used idle one is closed)")
      ->default_val(4)->check(CLI::Range(1, 1024));
  s->add_option("--model-id", a.model_id, "the model id clients ask for")->default_val("segment_anything_3");
  s->add_option("--device", a.device, "cpu or cuda; must match the bundle")->default_val("cpu");
  return s;
}

int run_serve(const ServeArgs& a) {
  // SIGTERM and SIGINT are taken by one thread (sigwait) that stops the server; every
  // thread started from here on inherits the block.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::fprintf(stderr, "sam3 serve: loading %s\n", a.bundle.c_str());
  Model model(a.bundle, a.device);
  serve::ImageCache cache(static_cast<size_t>(a.cache));
  serve::WorkQueue work(a.workers, static_cast<size_t>(a.queue));
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(a.timeout_s * 1000));
  const json info = model_info(a, model.manifest());
  serve::Context ctx{a, model, work, timeout, {}};
  std::atomic<uint64_t>& served = ctx.served;
  std::atomic<uint64_t>& rejected = ctx.rejected;
  std::atomic<uint64_t>& timed_out = ctx.timed_out;

  httplib::Server svr;
  // enough HTTP threads for every worker and waiting request, and a few more to answer
  // 503 (or /health) at once when all of those are taken
  const size_t http_threads = static_cast<size_t>(a.workers + a.queue + 4);
  svr.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, with which a second
  // server on a port in use starts silently and takes a share of its connections
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  svr.set_payload_max_length(static_cast<size_t>(a.max_body_mb * 1024 * 1024));
  svr.set_read_timeout(60, 0);
  svr.set_write_timeout(60, 0);
  svr.set_keep_alive_timeout(5);

  // checked in each route, not before routing: a request refused before its body is read
  // would leave that body on a kept-alive connection, to be read as the next request
  ctx.authorized = [&a](const httplib::Request& req, httplib::Response& res) {
    if (a.token.empty() || same_token(req.get_header_value("Token"), a.token)) return true;
    send(res, error_body("UNAUTHORIZED", "Invalid or missing API Key"));
    return false;
  };
  auto& authorized = ctx.authorized;
  std::shared_ptr<serve::VideoSessions> videos = serve::add_video_routes(svr, ctx);
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;  // a route's own answer
    const std::string what = res.status == 404   ? "no such endpoint"
                             : res.status == 413 ? "request body too large"
                             : res.status == 405 ? "method not allowed"
                                                 : "HTTP error " + std::to_string(res.status);
    send(res, {{"success", false}, {"error", {{"code", "HTTP_" + std::to_string(res.status)}, {"message", what}}},
               {"detail", what}}, res.status);
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send(res, error_body("INTERNAL_ERROR", what), 500);
  });

  svr.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    const auto c = cache.stats();
    send(res, {{"status", "healthy"}, {"models_loaded", 1}, {"timestamp", utc_now_iso()},
               {"queue", {{"busy", work.busy()}, {"waiting", work.waiting()}, {"workers", a.workers},
                          {"max_waiting", a.queue}}},
               {"cache", {{"entries", c.entries}, {"capacity", c.capacity}, {"hits", c.hits}, {"misses", c.misses}}},
               {"video_sessions", {{"open", serve::open_sessions(*videos)}, {"max", a.max_sessions}}},
               {"requests", {{"served", served.load()}, {"rejected", rejected.load()}, {"timed_out", timed_out.load()}}}});
  });
  svr.Get("/v1/models", [&](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    send(res, {{"success", true}, {"data", {{a.model_id, info}}}});
  });
  svr.Get(R"(/v1/models/([^/]+)/info)", [&](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    const std::string id = req.matches[1];
    if (id != a.model_id) return send(res, error_body("MODEL_NOT_FOUND", "Model '" + id + "' not loaded"));
    json d = info;
    d["model_id"] = id;
    send(res, {{"success", true}, {"data", d}});
  });
  svr.Post("/v1/predict", [&](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    json body;
    try {
      body = json::parse(req.body);
    } catch (const std::exception& e) {
      json err = error_body("INVALID_REQUEST", std::string("the body is not JSON: ") + e.what());
      err["detail"] = err["error"]["message"];
      return send(res, err, 422);
    }
    serve::PredictRequest pr;
    try {
      pr = serve::parse_predict(body, a.model_id);
    } catch (const RequestError& e) {
      const bool structural = e.code == "INVALID_REQUEST" && (!body.is_object() || !body.contains("model") ||
                                                              !body.contains("image"));
      json err = error_body(e.code, e.what());
      if (structural) err["detail"] = e.what();
      return send(res, err, structural ? 422 : 200);
    }
    // the job owns what it reads and writes: after a timeout it may still be running
    auto request = std::make_shared<serve::PredictRequest>(std::move(pr));
    auto result = std::make_shared<json>();
    auto hit = std::make_shared<bool>(false);
    serve::WorkQueue::Status st;
    try {
      st = work.run([&model, &cache, request, result, hit] { *result = serve::run_predict(model, cache, *request, hit.get()); },
                    timeout);
    } catch (const RequestError& e) {
      return send(res, error_body(e.code, e.what()));
    } catch (const std::exception& e) {
      return send(res, error_body("INFERENCE_ERROR", e.what()));
    }
    switch (st) {
      case serve::WorkQueue::Status::Done:
        ++served;
        res.set_header("X-Sam3-Cache", *hit ? "hit" : "miss");
        return send(res, {{"success", true}, {"data", *result}});
      case serve::WorkQueue::Status::Full:
        ++rejected;
        return send(res, serve::queue_full_body(), 503);
      case serve::WorkQueue::Status::TimedOut:
        ++timed_out;
        return send(res, error_body("TIMEOUT", "the request took longer than " + std::to_string(a.timeout_s) + " s"));
      case serve::WorkQueue::Status::Stopped:
        return send(res, error_body("SHUTTING_DOWN", "the server is stopping"), 503);
    }
  });

  int port = a.port;
  if (port == 0) {
    port = svr.bind_to_any_port(a.host);
  } else if (!svr.bind_to_port(a.host, port)) {
    port = -1;
  }
  if (port < 0) throw Error("cannot listen on " + a.host + ":" + std::to_string(a.port) + " (in use, or a bad address)");

  std::atomic<bool> signalled{false};
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    signalled = true;
    std::fprintf(stderr, "sam3 serve: %s, finishing the requests in progress\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    svr.stop();
  });
  std::printf("sam3 serve: listening on http://%s:%d (model %s, %d worker(s), queue %d, cache %d)\n", a.host.c_str(),
              port, a.model_id.c_str(), a.workers, a.queue, a.cache);
  std::fflush(stdout);
  const bool ok = svr.listen_after_bind();
  // wake the stopper if the server ended for another reason (it is blocked in sigwait)
  if (!signalled) kill(getpid(), SIGTERM);
  stopper.join();
  work.stop();
  std::fprintf(stderr, "sam3 serve: stopped (%llu served, %llu rejected with 503, %llu timed out)\n",
               static_cast<unsigned long long>(served.load()), static_cast<unsigned long long>(rejected.load()),
               static_cast<unsigned long long>(timed_out.load()));
  return ok ? 0 : 1;
}

}  // namespace sam3::cli

namespace sam3::serve {

bool parse_body(const httplib::Request& req, httplib::Response& res, const std::string& model_id, nlohmann::json& body) {
  try {
    body = nlohmann::json::parse(req.body);
  } catch (const std::exception& e) {
    nlohmann::json err = error_body("INVALID_REQUEST", std::string("the body is not JSON: ") + e.what());
    err["detail"] = err["error"]["message"];
    send(res, err, 422);
    return false;
  }
  if (!body.is_object() || !body.contains("model") || !body["model"].is_string()) {
    nlohmann::json err = error_body("INVALID_REQUEST", "the body must be a JSON object with a \"model\" string");
    err["detail"] = err["error"]["message"];
    send(res, err, 422);
    return false;
  }
  if (body["model"].get<std::string>() != model_id) {
    send(res, error_body("MODEL_NOT_FOUND", "Model '" + body["model"].get<std::string>() + "' not loaded"));
    return false;
  }
  return true;
}

}  // namespace sam3::serve
