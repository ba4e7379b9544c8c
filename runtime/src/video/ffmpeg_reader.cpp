// Video files through FFmpeg (libavformat/libavcodec send-receive API, libswscale).
//
// At open the best video stream's packets are scanned once, without decoding:
// each packet that is not flagged discard (e.g. cut by an MP4 edit list) and
// not empty is one frame. When every such packet has a distinct pts, frames
// are numbered in pts order (which handles B-frame reordering) and a decoded
// frame is recognised by its pts; seeking goes to the last keyframe whose pts
// is at or before the target and decodes forward. Without usable pts (some
// AVI/raw streams) frames are numbered in decoder output order, and going
// backwards restarts from the beginning of the file.
//
// Only the current decoded frame is held (plus what the decoder itself keeps
// as references). Errors carry the path and av_strerror's message.
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libavutil/log.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <vector>

#include "readers.h"
#include "sam3/error.h"
#include "sam3/limits.h"

namespace sam3::video {
namespace {

std::string av_message(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  if (av_strerror(err, buf, sizeof buf) < 0) std::snprintf(buf, sizeof buf, "error %d", err);
  return buf;
}

// The library never prints: FFmpeg's logging is switched off once per process.
void silence_ffmpeg() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_QUIET); });
}

struct FormatCloser {
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct CodecFreer {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameFreer {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct SwsFreer {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;

// A container opened on its best video stream.
struct Container {
  FormatPtr fmt;
  int stream = -1;
  const AVCodec* codec = nullptr;
};

struct Keyframe {
  int64_t pts;   // presentation time, to choose the keyframe for a target
  int64_t seek;  // min(pts, dts): at or before the keyframe whichever the demuxer indexes
};

class FfmpegReader : public VideoReader {
 public:
  explicit FfmpegReader(const std::string& path) : path_(path) {
    scan();
    restart();
    const Image first = frame(0);  // the size, and an early failure on a bad file
    width_ = first.width;
    height_ = first.height;
  }
  int num_frames() const override { return count_; }
  int width() const override { return width_; }
  int height() const override { return height_; }
  Image frame(int index) override;
  std::string describe() const override { return description_; }

 private:
  [[noreturn]] void fail(const std::string& what, int err = 0) const {
    throw Error("video " + path_ + ": " + what + (err ? ": " + av_message(err) : ""));
  }
  // A failure mid-decode: the position is unknown afterwards.
  [[noreturn]] void decode_failed(const std::string& what, int err) {
    next_ = -1;
    fail(what + " (reading frame " + std::to_string(wanted_) + ")", err);
  }
  Container open_container() const;
  void scan();
  void restart();
  bool decode_next();
  int64_t frame_ts() const {
    return frame_->pts != AV_NOPTS_VALUE ? frame_->pts : frame_->best_effort_timestamp;
  }
  bool seek_before(int index);
  bool decode_until(int index);
  size_t group_of(int index) const;
  Image to_rgb(int index);

  std::string path_, description_;
  int count_ = 0, width_ = 0, height_ = 0;
  bool pts_mode_ = false;
  std::vector<int64_t> pts_;         // per frame, ascending (pts mode)
  std::vector<Keyframe> keyframes_;  // ascending pts (pts mode)

  Container in_;
  CodecPtr dec_;
  PacketPtr pkt_{av_packet_alloc()};
  FramePtr frame_{av_frame_alloc()}, rgb_{av_frame_alloc()};
  SwsPtr sws_;
  bool draining_ = false;
  int next_ = 0;    // index of the frame decode_next() returns next; -1: unknown
  int wanted_ = 0;  // the frame being read, for error messages
};

Container FfmpegReader::open_container() const {
  Container c;
  AVFormatContext* fmt = nullptr;
  int r = avformat_open_input(&fmt, path_.c_str(), nullptr, nullptr);
  if (r < 0) fail("cannot open", r);
  c.fmt.reset(fmt);
  if ((r = avformat_find_stream_info(fmt, nullptr)) < 0) fail("cannot read stream info", r);
  r = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &c.codec, 0);
  if (r == AVERROR_STREAM_NOT_FOUND) fail("has no video stream");
  if (r < 0) fail("no decoder for its video stream", r);
  c.stream = r;
  const AVCodecParameters* par = fmt->streams[r]->codecpar;
  if (static_cast<uint64_t>(std::max(par->width, 0)) * static_cast<uint64_t>(std::max(par->height, 0)) >
      kMaxImagePixels)
    fail("its frames are " + std::to_string(par->width) + "x" + std::to_string(par->height) +
         ": more pixels than the limit (" + std::to_string(kMaxImagePixels) + ")");
  return c;
}

void FfmpegReader::scan() {
  Container c = open_container();
  const AVStream* st = c.fmt->streams[c.stream];
  struct Pkt {
    int64_t pts, dts;
    bool key;
  };
  std::vector<Pkt> pkts;
  PacketPtr pkt(av_packet_alloc());
  if (!pkt) fail("out of memory");
  for (;;) {
    const int r = av_read_frame(c.fmt.get(), pkt.get());
    if (r == AVERROR_EOF) break;
    if (r < 0) fail("cannot read packets", r);
    if (pkt->stream_index == c.stream && pkt->size > 0 && !(pkt->flags & AV_PKT_FLAG_DISCARD))
      pkts.push_back({pkt->pts, pkt->dts, (pkt->flags & AV_PKT_FLAG_KEY) != 0});
    av_packet_unref(pkt.get());
    if (pkts.size() > static_cast<size_t>(kMaxVideoFrames))
      fail("has more than " + std::to_string(kMaxVideoFrames) + " frames (the limit)");
  }
  count_ = static_cast<int>(pkts.size());
  if (count_ == 0) fail("has no video frames");

  pts_mode_ = std::all_of(pkts.begin(), pkts.end(),
                          [](const Pkt& p) { return p.pts != AV_NOPTS_VALUE; });
  if (pts_mode_) {
    for (const Pkt& p : pkts) pts_.push_back(p.pts);
    std::sort(pts_.begin(), pts_.end());
    pts_mode_ = std::adjacent_find(pts_.begin(), pts_.end()) == pts_.end();
    if (!pts_mode_) pts_.clear();
  }
  if (pts_mode_) {
    for (const Pkt& p : pkts)
      if (p.key)
        keyframes_.push_back({p.pts, p.dts == AV_NOPTS_VALUE ? p.pts : std::min(p.pts, p.dts)});
    std::sort(keyframes_.begin(), keyframes_.end(),
              [](const Keyframe& a, const Keyframe& b) { return a.pts < b.pts; });
  }

  // "H.264 video, 24 frames, 25 fps"
  const AVCodecID id = st->codecpar->codec_id;
  std::string codec = id == AV_CODEC_ID_H264 ? "H.264" : id == AV_CODEC_ID_HEVC ? "H.265" : "";
  if (codec.empty())
    for (const char* n = avcodec_get_name(id); *n; ++n)
      codec += static_cast<char>(std::toupper(static_cast<unsigned char>(*n)));
  description_ = codec + " video, " + std::to_string(count_) + " frames";
  const AVRational rate = av_guess_frame_rate(c.fmt.get(), const_cast<AVStream*>(st), nullptr);
  if (rate.num > 0 && rate.den > 0) {
    const double fps = av_q2d(rate);
    char buf[32];
    std::snprintf(buf, sizeof buf, std::abs(fps - std::round(fps)) < 1e-3 ? "%.0f" : "%.2f", fps);
    description_ += std::string(", ") + buf + " fps";
  }
}

// (Re)opens the file and a fresh decoder, positioned before frame 0. Also the
// fallback for going backwards without timestamps and for a failed seek.
void FfmpegReader::restart() {
  next_ = -1;  // until it succeeds; the old state stays usable if it throws
  Container in = open_container();
  const AVStream* st = in.fmt->streams[in.stream];
  CodecPtr dec(avcodec_alloc_context3(in.codec));
  if (!dec || !pkt_ || !frame_ || !rgb_) fail("out of memory");
  int r = avcodec_parameters_to_context(dec.get(), st->codecpar);
  if (r < 0) fail("bad codec parameters", r);
  dec->pkt_timebase = st->time_base;
  // Slice threads only: frame threading would hold several frames in flight.
  dec->thread_type = FF_THREAD_SLICE;
  dec->thread_count = 0;
  if ((r = avcodec_open2(dec.get(), in.codec, nullptr)) < 0) fail("cannot open the decoder", r);
  dec_ = std::move(dec);
  in_ = std::move(in);
  draining_ = false;
  next_ = 0;
}

// The decoder's next frame into frame_ (output order); false at the end.
bool FfmpegReader::decode_next() {
  for (;;) {
    int r = avcodec_receive_frame(dec_.get(), frame_.get());
    if (r == 0) return true;
    if (r == AVERROR_EOF) return false;
    if (r != AVERROR(EAGAIN)) decode_failed("decoding failed", r);
    if (draining_) return false;
    // The decoder wants input: one packet of our stream, or the end.
    for (;;) {
      r = av_read_frame(in_.fmt.get(), pkt_.get());
      if (r == AVERROR_EOF) {
        draining_ = true;
        avcodec_send_packet(dec_.get(), nullptr);
        break;
      }
      if (r < 0) decode_failed("cannot read packets", r);
      // An empty packet would read as "flush" to the decoder: skip it.
      if (pkt_->stream_index != in_.stream || pkt_->size == 0) {
        av_packet_unref(pkt_.get());
        continue;
      }
      r = avcodec_send_packet(dec_.get(), pkt_.get());
      av_packet_unref(pkt_.get());
      if (r < 0 && r != AVERROR(EAGAIN)) decode_failed("decoding failed", r);
      break;
    }
  }
}

// Positions the decoder so that decoding forward reaches frame `index`: seeks
// to the last keyframe at or before it, or restarts from the top. Returns
// false if it restarted (next_ is then 0 and the numbering is known).
bool FfmpegReader::seek_before(int index) {
  const size_t group = group_of(index);
  if (group == 0 || av_seek_frame(in_.fmt.get(), in_.stream, keyframes_[group - 1].seek,
                                  AVSEEK_FLAG_BACKWARD) < 0) {
    restart();
    return false;
  }
  avcodec_flush_buffers(dec_.get());
  draining_ = false;
  next_ = -1;  // found again from the decoded frames' pts
  return true;
}

// Decodes forward to the frame with frame `index`'s pts; false if the decoder
// passes it or ends first.
bool FfmpegReader::decode_until(int index) {
  const int64_t target = pts_[index];
  while (decode_next()) {
    const int64_t ts = frame_ts();
    if (ts == target) {
      next_ = index + 1;
      return true;
    }
    if (ts > target) break;
  }
  next_ = -1;
  return false;
}

// The number of keyframes at or before frame `index`: frames with the same
// value share a keyframe, so decoding forward between them needs no seek.
size_t FfmpegReader::group_of(int index) const {
  return std::upper_bound(keyframes_.begin(), keyframes_.end(), pts_[index],
                          [](int64_t t, const Keyframe& k) { return t < k.pts; }) -
         keyframes_.begin();
}

Image FfmpegReader::frame(int index) {
  check_frame_index(index, count_, path_);
  wanted_ = index;
  if (!pts_mode_) {
    // Numbered by output order: forward only, from the top if need be.
    if (next_ < 0 || index < next_) restart();
    while (next_ <= index) {
      if (!decode_next()) {
        const int at = next_;
        next_ = -1;
        fail("the decoder ended at frame " + std::to_string(at) + " of " +
             std::to_string(count_));
      }
      if (next_++ == index) return to_rgb(index);
    }
  }
  bool from_top = false;
  if (next_ < 0 || index < next_ || (next_ < count_ && group_of(next_) != group_of(index)))
    from_top = !seek_before(index);
  if (decode_until(index)) return to_rgb(index);
  // Not where expected (a demuxer that seeks late, a frame the decoder drops):
  // once more from the top of the file.
  if (!from_top) {
    restart();
    if (decode_until(index)) return to_rgb(index);
  }
  fail("the decoder produced no frame " + std::to_string(index) + " (pts " +
       std::to_string(pts_[index]) + ")");
}

// frame_ -> RGB24 at its own size. Accurate rounding, full chroma
// interpolation and bit-exact mode: the same result on every CPU, and lossless
// for RGB-native formats (gbrp, bgr0, ...), which swscale only repacks.
Image FfmpegReader::to_rgb(int index) {
  const int w = frame_->width, h = frame_->height;
  const auto src = static_cast<AVPixelFormat>(frame_->format);
  if (w <= 0 || h <= 0 || src == AV_PIX_FMT_NONE)
    fail("frame " + std::to_string(index) + " is empty");
  if (static_cast<uint64_t>(w) * static_cast<uint64_t>(h) > kMaxImagePixels)
    fail("frame " + std::to_string(index) + " is " + std::to_string(w) + "x" + std::to_string(h) +
         ": more pixels than the limit (" + std::to_string(kMaxImagePixels) + ")");
  if (width_ > 0) check_frame_size(index, path_, w, h, width_, height_);
  const int flags = SWS_BILINEAR | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_BITEXACT;
  sws_.reset(sws_getCachedContext(sws_.release(), w, h, src, w, h, AV_PIX_FMT_RGB24, flags,
                                  nullptr, nullptr, nullptr));
  if (!sws_) fail("cannot convert frame " + std::to_string(index) + " to RGB");
  // YUV -> RGB with the frame's own matrix and range, as the ffmpeg CLI's scale
  // filter does (unspecified: BT.601, limited range). RGB input is only repacked.
  const AVPixFmtDescriptor* desc = av_pix_fmt_desc_get(src);
  if (desc && !(desc->flags & AV_PIX_FMT_FLAG_RGB)) {
    const int* coefs = sws_getCoefficients(frame_->colorspace);
    sws_setColorspaceDetails(sws_.get(), coefs, frame_->color_range == AVCOL_RANGE_JPEG, coefs,
                             1, 0, 1 << 16, 1 << 16);
  }
  // swscale may write whole SIMD blocks: convert into a padded frame, then copy.
  if (rgb_->width != w || rgb_->height != h) {
    av_frame_unref(rgb_.get());
    rgb_->format = AV_PIX_FMT_RGB24;
    rgb_->width = w;
    rgb_->height = h;
    const int r = av_frame_get_buffer(rgb_.get(), 0);
    if (r < 0) fail("cannot allocate a frame", r);
  }
  sws_scale(sws_.get(), frame_->data, frame_->linesize, 0, h, rgb_->data, rgb_->linesize);
  av_frame_unref(frame_.get());
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    std::copy_n(rgb_->data[0] + static_cast<size_t>(y) * rgb_->linesize[0],
                static_cast<size_t>(w) * 3, img.rgb.data() + static_cast<size_t>(y) * w * 3);
  return img;
}

}  // namespace

std::unique_ptr<VideoReader> open_video_file(const std::string& path) {
  silence_ffmpeg();
  return std::make_unique<FfmpegReader>(path);
}

}  // namespace sam3::video
