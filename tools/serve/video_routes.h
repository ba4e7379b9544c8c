// The video routes of `sam3 serve` (X-AnyLabeling-Server's /v1/video/*): sessions made
// from uploaded frames, text or click prompts, propagation as one JSON answer or as a
// server-sent-event stream (docs/serve.md).
#pragma once

#include <httplib.h>

#include "context.h"

namespace sam3::serve {

class VideoSessions;

// Registers the routes on `svr`; the returned store owns the sessions (and their frame
// folders) and must outlive the server.
std::shared_ptr<VideoSessions> add_video_routes(httplib::Server& svr, Context& ctx);

// Sessions open now (GET /health reports it).
std::size_t open_sessions(const VideoSessions& s);

}  // namespace sam3::serve
