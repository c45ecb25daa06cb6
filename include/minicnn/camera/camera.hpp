// minicnn::camera umbrella header: live classification from a V4L2 webcam (or a replayed
// folder of pictures or MJPEG file), shown in a browser. Opt-in and Linux only: needs the
// minicnn::camera CMake target (libturbojpeg, cpp-httplib, threads); minicnn.hpp does not
// include it.
#pragma once
#include "frame_source.hpp"
#include "geometry.hpp"
#include "live.hpp"
#include "mjpeg.hpp"
#include "page.hpp"
#include "pipeline.hpp"
#include "recorder.hpp"
#include "server.hpp"
#include "slots.hpp"
#include "v4l2_device.hpp"
#include "v4l2_io.hpp"
#include "v4l2_source.hpp"
#include "yuyv.hpp"
