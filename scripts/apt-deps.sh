#!/usr/bin/env bash
# Install the Debian packages the build needs, only those not yet installed.
set -eu
pkgs=(g++ cmake make pkg-config python3-venv time
      libpng-dev libjpeg-dev zlib1g-dev libssl-dev libutf8proc-dev nlohmann-json3-dev libcli11-dev libgtest-dev
      libavformat-dev libavcodec-dev libavutil-dev libswscale-dev ffmpeg
      libcpp-httplib-dev libopencv-imgproc-dev  # sam3 serve: HTTP server, mask contours
      clang libclang-rt-dev)  # clang + compiler-rt: libFuzzer and the sanitizer runtimes
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
