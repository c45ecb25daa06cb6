// minicnn::camera: the V4L2 capture code behind a fake device (format negotiation, buffer
// queueing and teardown, every error a user can meet), MJPEG and YUYV decoding against
// fixtures written by tools/make_camera_fixtures.py (PIL's decoding and a numpy BT.601
// conversion as independent references; stb_image as a second JPEG decoder), the crop /
// scale geometry and smoothing against hand-computed values, the recorder's path rules, and
// the whole pipeline (image-folder replay -> classifier -> HTTP server) on a hand-made
// two-class model: red frames must read "red", green frames "green", in /status and the stream.
#include "camera_support.hpp"
#include "jpeg_bytes.hpp"

using namespace camtest;

// ----------------------------------------------------------------------------- V4L2 device

TEST_CASE("v4l2: MJPEG is preferred and the driver's size used and all buffers mapped and queued") {
  FakeCamera cam;
  {
    V4l2Device dev(cam, "/dev/video0", CaptureOptions{});
    CHECK(dev.pixel_format() == V4L2_PIX_FMT_MJPEG);
    CHECK(dev.is_mjpeg());
    CHECK(dev.width() == 640);
    CHECK(dev.height() == 480);
    CHECK(dev.buffer_count() == 4);
    CHECK(cam.asked_buffers == 4);
    CHECK(cam.queue.size() == 4);
    CHECK(cam.streamons == 1);
    CHECK(dev.info().card == "Fake Cam");
    CHECK(!dev.frame_rate_set());  // the fake has no S_PARM: not an error
  }
  CHECK(cam.streamoffs == 1);
  CHECK(cam.munmaps == 4);
  CHECK(cam.reqbufs_zero == 1);
  CHECK(cam.open_fds == 0);

  CaptureOptions big;
  big.width = 1200;
  big.height = 700;  // nearest offered: 1280x720
  V4l2Device dev(cam, "/dev/video0", big);
  CHECK(dev.width() == 1280);
  CHECK(dev.height() == 720);
}

TEST_CASE("v4l2: YUYV when MJPEG is not offered or not wanted") {
  FakeCamera cam;
  cam.formats = {{V4L2_PIX_FMT_YUYV, "YUYV 4:2:2"}};
  {
    V4l2Device dev(cam, "/dev/video0");
    CHECK(dev.pixel_format() == V4L2_PIX_FMT_YUYV);
    CHECK(dev.bytes_per_line() == 640 * 2);
  }
  const std::string msg = error_of<CameraError>([&] {
    CaptureOptions o;
    o.format = "mjpeg";
    V4l2Device dev(cam, "/dev/video0", o);
  });
  CHECK(has(msg, "MJPG"));
  CHECK(has(msg, "'YUYV' (YUYV 4:2:2)"));
  CHECK(cam.open_fds == 0);

  FakeCamera both;
  CaptureOptions o;
  o.format = "yuyv";
  V4l2Device dev(both, "/dev/video0", o);
  CHECK(dev.pixel_format() == V4L2_PIX_FMT_YUYV);
}

TEST_CASE("v4l2: no supported format: the error lists what the camera offers") {
  FakeCamera cam;
  cam.formats = {{v4l2_fourcc('G', 'R', 'E', 'Y'), "8-bit Greyscale"},
                 {v4l2_fourcc('N', 'V', '1', '2'), "Y/UV 4:2:0"}};
  try {
    V4l2Device dev(cam, "/dev/video0");
    FAIL("expected CameraError");
  } catch (const CameraError& e) {
    CHECK(e.kind() == CameraError::Kind::NoFormat);
    const std::string m = e.what();
    CHECK(has(m, "/dev/video0"));
    CHECK(has(m, "'GREY' (8-bit Greyscale)"));
    CHECK(has(m, "'NV12' (Y/UV 4:2:0)"));
    CHECK(has(m, "MJPG or YUYV"));
  }
  CHECK(cam.opens == 1);
  CHECK(cam.closes == 1);  // nothing leaks when negotiation fails
}

TEST_CASE("v4l2: every dequeued buffer is requeued and the granted count used and teardown full") {
  FakeCamera cam;
  cam.grant = 3;  // asked 5, the driver grants 3
  for (int i = 0; i < 10; ++i) cam.payloads.push_back(std::vector<uint8_t>(100 + i, uint8_t(i)));
  {
    CaptureOptions o;
    o.buffers = 5;
    V4l2Device dev(cam, "/dev/video0", o);
    CHECK(cam.asked_buffers == 5);
    CHECK(dev.buffer_count() == 3);
    CHECK(cam.qbufs == 3);
    std::vector<size_t> sizes;
    for (int i = 0; i < 7; ++i) {
      bool got = dev.read_frame(100, [&](const uint8_t* p, size_t n) {
        sizes.push_back(n);
        CHECK(p[0] == uint8_t(i));
        CHECK(cam.out.size() == 1);  // the buffer is ours while the callback runs
      });
      CHECK(got);
      CHECK(cam.out.empty());  // and back with the driver afterwards
    }
    CHECK(sizes == std::vector<size_t>{100, 101, 102, 103, 104, 105, 106});
    CHECK(cam.qbufs == 3 + 7);
    CHECK(cam.queue.size() == 3);
    // A callback that throws still gives the buffer back.
    CHECK_THROWS_AS(dev.read_frame(100, [](const uint8_t*, size_t) { throw FormatError("bad"); }),
                    FormatError);
    CHECK(cam.out.empty());
    CHECK(cam.queue.size() == 3);
    // A frame the driver marks corrupt is skipped and requeued.
    cam.payload_flags = {V4L2_BUF_FLAG_ERROR};
    bool called = false;
    CHECK(!dev.read_frame(100, [&](const uint8_t*, size_t) { called = true; }));
    CHECK(!called);
    CHECK(cam.out.empty());
    // Nothing to read: a timeout, not an error.
    cam.payloads.clear();
    CHECK(!dev.read_frame(5, [&](const uint8_t*, size_t) { called = true; }));
    CHECK(!called);
    CHECK(cam.dqbufs == 9);
    CHECK(cam.qbufs == 3 + 9);
  }
  CHECK(cam.streamoffs == 1);
  CHECK(cam.munmaps == 3);
  for (bool m : cam.mapped) CHECK(!m);
  CHECK(cam.reqbufs_zero == 1);
  CHECK(cam.opens == 1);
  CHECK(cam.closes == 1);
}

TEST_CASE("v4l2: open errors say what happened and what to do") {
  FakeCamera cam;
  {
    const std::string m = error_of<CameraError>([&] { V4l2Device d(cam, "/dev/video7"); });
    CHECK(has(m, "'/dev/video7'"));
    CHECK(has(m, "no such device"));
    CHECK(has(m, "ENOENT"));
    CHECK(has(m, "--list-devices"));
  }
  cam.open_errno["/dev/video0"] = EACCES;
  try {
    V4l2Device d(cam, "/dev/video0");
    FAIL("expected CameraError");
  } catch (const CameraError& e) {
    CHECK(e.kind() == CameraError::Kind::PermissionDenied);
    CHECK(e.error_code() == EACCES);
    const std::string m = e.what();
    CHECK(has(m, "permission denied"));
    CHECK(has(m, "video group"));
    CHECK(has(m, "sudo usermod -aG video $USER"));
    CHECK(has(m, "log out and in again"));
  }
  cam.open_errno["/dev/video0"] = EBUSY;
  {
    const std::string m = error_of<CameraError>([&] { V4l2Device d(cam, "/dev/video0"); });
    CHECK(has(m, "busy"));
    CHECK(has(m, "EBUSY"));
    CHECK(has(m, "another program"));
  }
  // Busy is also how REQBUFS answers while another program streams; everything opened so far
  // is released.
  cam.open_errno.clear();
  cam.fail[VIDIOC_REQBUFS] = EBUSY;
  try {
    V4l2Device d(cam, "/dev/video0");
    FAIL("expected CameraError");
  } catch (const CameraError& e) {
    CHECK(e.kind() == CameraError::Kind::Busy);
    CHECK(has(e.what(), "VIDIOC_REQBUFS"));
  }
  CHECK(cam.open_fds == 0);
  cam.fail.clear();
  cam.fail[VIDIOC_STREAMON] = ENOSPC;  // USB bandwidth exhausted: mappings must be undone
  CHECK_THROWS_AS(V4l2Device(cam, "/dev/video0"), CameraError);
  CHECK(cam.munmaps == 4);
  CHECK(cam.open_fds == 0);
}

TEST_CASE("v4l2: nodes that cannot capture are refused with a hint") {
  FakeCamera meta;
  meta.caps = V4L2_CAP_META_CAPTURE | V4L2_CAP_STREAMING;
  try {
    V4l2Device d(meta, "/dev/video0");
    FAIL("expected CameraError");
  } catch (const CameraError& e) {
    CHECK(e.kind() == CameraError::Kind::NotCapture);
    CHECK(has(e.what(), "not a video capture device"));
    CHECK(has(e.what(), "metadata node"));
    CHECK(has(e.what(), "--list-devices"));
  }
  CHECK(meta.open_fds == 0);
  FakeCamera nostream;
  nostream.caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_READWRITE;
  CHECK(has(error_of<CameraError>([&] { V4l2Device d(nostream, "/dev/video0"); }),
            "without streaming"));
  FakeCamera tty;
  tty.querycap_errno = ENOTTY;
  try {
    V4l2Device d(tty, "/dev/video0");
    FAIL("expected CameraError");
  } catch (const CameraError& e) {
    CHECK(e.kind() == CameraError::Kind::NotV4l2);
    CHECK(has(e.what(), "not a V4L2 video device"));
  }
}

TEST_CASE("v4l2: --list-devices and --list-formats text") {
  FakeCamera cam;
  cam.nodes = {"/dev/video0", "/dev/video1"};
  cam.open_errno["/dev/video1"] = EACCES;
  const std::string devs = list_devices_text(cam);
  CHECK(has(devs, "/dev/video0  \"Fake Cam\"  driver fakecam"));
  CHECK(has(devs, "video capture"));
  CHECK(has(devs, "/dev/video1  (camera '/dev/video1': permission denied"));
  const std::string fmts = list_formats_text(cam, "/dev/video0");
  CHECK(has(fmts, "'MJPG'  Motion-JPEG (compressed)  <- haribo_camera uses this"));
  CHECK(has(fmts, "'YUYV'  YUYV 4:2:2\n"));
  CHECK(has(fmts, "sizes: 320x240 640x480 1280x720"));
  FakeCamera none;
  none.nodes.clear();
  CHECK(has(list_devices_text(none), "no video devices"));
  CHECK(cam.open_fds == 0);
  // The real node listing sorts by number.
  CHECK(v4l2_detail::sorted_video_nodes("/dev", {"video10", "video2", "videoX", "video0", "vid"}) ==
        std::vector<std::string>{"/dev/video0", "/dev/video2", "/dev/video10"});
}

TEST_CASE(
    "v4l2 source: MJPEG frames without Huffman tables decode and the stream gets them fixed") {
  FakeCamera cam;
  const std::vector<uint8_t> nodht = fixture("frame_nodht.jpg"), jpg = fixture("frame.jpg");
  for (int i = 0; i < 3; ++i) cam.payloads.push_back(nodht);
  cam.payloads.push_back({0xFF, 0xD8, 0x00, 0x01});  // a broken frame: skipped
  cam.payloads.push_back(nodht);
  V4l2SourceOptions o;
  o.quiet = true;
  V4l2Source src(cam, "/dev/video0", o);
  JpegDecoder dec;
  const Image want = dec.decode(jpg.data(), jpg.size(), 1, "frame.jpg");
  int frames = 0, polls = 0;
  while (frames < 4 && polls++ < 50) {
    std::optional<Frame> f = src.next(50);
    if (!f) continue;
    CHECK(f->index == frames);
    CHECK(f->image.width == 64);
    CHECK(f->image.height == 48);
    CHECK(f->image.pixels == want.pixels);
    REQUIRE(f->jpeg);
    CHECK(jpeg_has_huffman_tables(f->jpeg->data(), f->jpeg->size()));
    ++frames;
  }
  CHECK(frames == 4);
  CHECK(src.bad_frames() == 1);
  CHECK(cam.out.empty());
}

TEST_CASE("v4l2 source: YUYV frames convert at full size") {
  FakeCamera cam;
  cam.formats = {{V4L2_PIX_FMT_YUYV, "YUYV 4:2:2"}};
  cam.payloads.push_back(yuyv_of_size(640, 480));
  V4l2SourceOptions o;
  o.quiet = true;
  o.decode.need_width = o.decode.need_height = 96;
  V4l2Source src(cam, "/dev/video0", o);
  std::optional<Frame> f;
  for (int i = 0; i < 20 && !f; ++i) f = src.next(50);
  REQUIRE(f);
  CHECK(f->image.width == 640);
  CHECK(f->image.height == 480);
  CHECK(!f->jpeg);
  // Y=100, Cb=Cr=128: grey (100-16)*255/219 = 97.8 -> 98; Y=120 -> 121.1 -> 121.
  CHECK(f->image.pixels[0] == 98);
  CHECK(f->image.pixels[3] == 121);
  CHECK(has(src.describe(), "YUYV 640x480"));
}

TEST_CASE("v4l2 source: unplugged mid-stream and not back in time gives a clean error") {
  FakeCamera cam;
  for (int i = 0; i < 10; ++i) cam.payloads.push_back(fixture("frame_nodht.jpg"));
  cam.unplug_after = 2;
  cam.absent_opens = 1000;
  V4l2SourceOptions o;
  o.quiet = true;
  o.reconnect_timeout_s = 0.3;
  o.retry_interval_s = 0.05;
  V4l2Source src(cam, "/dev/video0", o);
  int frames = 0;
  bool saw_problem = false;
  const auto t0 = Clock::now();
  try {
    for (int i = 0; i < 1000; ++i) {
      if (src.next(50)) ++frames;
      if (src.problem() == "camera unplugged, reconnecting") saw_problem = true;
    }
    FAIL("expected CameraError after the reconnect timeout");
  } catch (const CameraError& e) {
    CHECK(e.kind() == CameraError::Kind::Unplugged);
    const std::string m = e.what();
    CHECK(has(m, "unplugged (ENODEV)"));
    CHECK(has(m, "did not come back within 0.3 s"));
    CHECK(has(m, "no such device"));
  }
  const double waited = seconds_between(t0, Clock::now());
  CHECK(waited >= 0.3);
  CHECK(waited < 3.0);
  CHECK(frames == 2);
  CHECK(saw_problem);
  // The lost device was released: no mapping, no descriptor left.
  for (bool m : cam.mapped) CHECK(!m);
  CHECK(cam.munmaps == 4);
  CHECK(cam.open_fds == 0);
}

TEST_CASE("v4l2 source: unplugged and plugged back in: frames continue") {
  FakeCamera cam;
  for (int i = 0; i < 6; ++i) cam.payloads.push_back(fixture("frame_nodht.jpg"));
  cam.unplug_after = 2;
  cam.absent_opens = 3;
  V4l2SourceOptions o;
  o.quiet = true;
  o.reconnect_timeout_s = 5;
  o.retry_interval_s = 0.02;
  V4l2Source src(cam, "/dev/video0", o);
  int frames = 0;
  for (int i = 0; i < 500 && frames < 6; ++i)
    if (src.next(20)) ++frames;
  CHECK(frames == 6);
  CHECK(cam.opens == 2);
  CHECK(src.problem().empty());
  CHECK(cam.open_fds == 1);
}

// ----------------------------------------------------------------------------- decoding

TEST_CASE("yuyv: BT.601 limited range matches the numpy reference") {
  const std::vector<uint8_t> raw = fixture("yuyv.bin");
  std::vector<int64_t> dims;
  const std::vector<uint8_t> want = npy_u8("yuyv_rgb.npy", &dims);
  REQUIRE(dims == std::vector<int64_t>{6, 16, 3});
  Image img;
  yuyv_to_rgb(raw.data(), raw.size(), 16, 6, 40, img);
  REQUIRE(img.pixels.size() == want.size());
  int worst = 0, exact = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const int d = std::abs(int(img.pixels[i]) - int(want[i]));
    worst = std::max(worst, d);
    exact += d == 0;
  }
  // Fixed point with 16 fraction bits: a pixel may differ from the float64 reference only
  // where that lies within 2e-3 of a rounding boundary.
  CHECK(worst <= 1);
  CHECK(exact >= int(want.size()) - 2);
  // Hand-checked corners: Y=16,Cb=Cr=128 is black; Y=235 is white; Y=0 clamps to 0.
  Image one;
  const uint8_t px[] = {16, 128, 235, 128};
  yuyv_to_rgb(px, 4, 2, 1, 4, one);
  CHECK(one.pixels == std::vector<uint8_t>{0, 0, 0, 255, 255, 255});
  // The last row needs no padding after its pixels: 5 * 40 + 32 bytes.
  yuyv_to_rgb(raw.data(), 232, 16, 6, 40, img);
  CHECK_THROWS_AS(yuyv_to_rgb(raw.data(), 231, 16, 6, 40, img), FormatError);
  CHECK_THROWS_AS(yuyv_to_rgb(raw.data(), raw.size(), 15, 6, 40, img), ShapeError);
}

TEST_CASE("mjpeg: TurboJPEG decodes as PIL does and the standard tables restore a bare frame") {
  const std::vector<uint8_t> jpg = fixture("frame.jpg"), nodht = fixture("frame_nodht.jpg");
  std::vector<int64_t> dims;
  const std::vector<uint8_t> pil = npy_u8("frame_rgb.npy", &dims);
  REQUIRE(dims == std::vector<int64_t>{48, 64, 3});
  JpegDecoder dec;
  const Image full = dec.decode(jpg.data(), jpg.size(), 1, "frame.jpg");
  CHECK(full.width == 64);
  CHECK(full.height == 48);
  CHECK(full.pixels == pil);

  CHECK(jpeg_has_huffman_tables(jpg.data(), jpg.size()));
  CHECK(!jpeg_has_huffman_tables(nodht.data(), nodht.size()));
  // stb_image, a decoder with no MJPEG fallback, cannot read the stripped frame.
  std::vector<char> as_chars(nodht.begin(), nodht.end());
  CHECK_THROWS_AS(decode_image_memory(as_chars, "nodht"), FormatError);

  const std::vector<uint8_t> fixed = with_huffman_tables(nodht.data(), nodht.size(), "nodht");
  CHECK(jpeg_has_huffman_tables(fixed.data(), fixed.size()));
  CHECK(fixed.size() == nodht.size() + 420);  // one DHT segment: marker + length + 418 bytes
  const Image restored = dec.decode(fixed.data(), fixed.size(), 1, "fixed");
  CHECK(restored.pixels == full.pixels);
  // ... and so can stb_image now, with the same pixels as from the original file.
  std::vector<char> fixed_chars(fixed.begin(), fixed.end()), jpg_chars(jpg.begin(), jpg.end());
  CHECK(decode_image_memory(fixed_chars, "fixed").pixels ==
        decode_image_memory(jpg_chars, "jpg").pixels);
  // A frame that has its tables is left alone.
  CHECK(with_huffman_tables(jpg.data(), jpg.size(), "jpg") == jpg);
  CHECK_THROWS_AS(with_huffman_tables(jpg.data(), 10, "cut"), FormatError);

  // Scaled decoding: sizes round up (libjpeg-turbo's TJSCALED), content stays the picture.
  for (int denom : {2, 4, 8}) {
    const Image s = dec.decode(jpg.data(), jpg.size(), denom, "frame.jpg");
    CHECK(s.width == (64 + denom - 1) / denom);
    CHECK(s.height == (48 + denom - 1) / denom);
    // The disc (red) sits around (0.6 w, 0.45 h).
    const uint8_t* p = s.row(int(0.45 * s.height)) + size_t(0.6 * s.width) * 3;
    CHECK(p[0] > 180);
    CHECK(p[1] < 90);
  }
  CHECK_THROWS_AS(dec.decode(jpg.data(), jpg.size(), 3, "x"), ConfigError);
  const std::vector<uint8_t> junk = {1, 2, 3, 4, 5};
  CHECK_THROWS_AS(dec.decode(junk.data(), junk.size(), 1, "junk"), FormatError);
}

TEST_CASE("decode_frame: a JPEG behind FF fill bytes is decoded by TurboJPEG, not stb_image") {
  // stb_image accepts FF bytes before the SOI and would decode such a frame itself, with its
  // entropy decoder that misbehaves on corrupt scans (docs/fuzzing.md, finding 14). A bare
  // UVC frame (no DHT) shows which decoder ran: stb refuses it, the camera path inserts the
  // standard tables and TurboJPEG decodes it.
  const std::vector<uint8_t> jpg = fixture("frame.jpg"), nodht = fixture("frame_nodht.jpg");
  JpegDecoder dec;
  const Image full = dec.decode(jpg.data(), jpg.size(), 1, "frame.jpg");
  std::vector<uint8_t> filled(3, 0xFF);
  filled.insert(filled.end(), nodht.begin() + 1, nodht.end());  // FF FF FF + FF D8 ...
  Frame f;
  decode_frame(filled.data(), filled.size(), DecodeOptions{}, dec, f, "filled");
  CHECK(f.image.width == 64);
  CHECK(f.image.height == 48);
  CHECK(f.image.pixels == full.pixels);
  REQUIRE(f.jpeg != nullptr);  // what the browser gets starts at the SOI
  CHECK((*f.jpeg)[0] == 0xFF);
  CHECK((*f.jpeg)[1] == 0xD8);
  // Fill bytes and no SOI: not a JPEG; stb_image's other formats do not know it either.
  std::vector<uint8_t> no_soi(8, 0xFF);
  CHECK_THROWS_AS(decode_frame(no_soi.data(), no_soi.size(), DecodeOptions{}, dec, f, "x"),
                  FormatError);
}

TEST_CASE("decode_frame: a frame with more than 500 scans is an error (TJFLAG_LIMITSCANS)") {
  // The same limit as decode_image_memory's (kMaxJpegScans), here inside libjpeg-turbo.
  JpegDecoder dec;
  Frame f;
  for (int scans : {2, 500}) {
    const std::vector<char> j = minicnn_test_jpeg::many_scan_jpeg(scans);
    const std::vector<uint8_t> bytes(j.begin(), j.end());
    decode_frame(bytes.data(), bytes.size(), DecodeOptions{}, dec, f, "ok");
    CHECK(f.image.width == 8);
    CHECK(f.image.pixels == std::vector<uint8_t>(8 * 8 * 3, 128));
  }
  const std::vector<char> j = minicnn_test_jpeg::many_scan_jpeg(501);
  const std::vector<uint8_t> bytes(j.begin(), j.end());
  mt::check_throws_with(
      [&] { decode_frame(bytes.data(), bytes.size(), DecodeOptions{}, dec, f, "'501'"); },
      {"'501'", "more than 500 scans"});
}

TEST_CASE("mjpeg: a stream splits into its frames and skips junk and a cut-off frame") {
  const std::vector<uint8_t> s = fixture("stream.mjpeg");
  const std::string meta(reinterpret_cast<const char*>(fixture("stream.json").data()),
                         fixture("stream.json").size());
  const nlohmann::json j = nlohmann::json::parse(meta);
  const auto frames = split_mjpeg(s.data(), s.size());
  REQUIRE(frames.size() == j["frames"].size());
  JpegDecoder dec;
  for (size_t i = 0; i < frames.size(); ++i) {
    CHECK(frames[i].first == j["frames"][i][0].get<size_t>());
    CHECK(frames[i].second == j["frames"][i][1].get<size_t>());
    const auto fixed = with_huffman_tables(s.data() + frames[i].first, frames[i].second, "f");
    const Image img = dec.decode(fixed.data(), fixed.size(), 1, "f");
    CHECK(img.width == j["sizes"][i][0].get<int>());
    CHECK(img.height == j["sizes"][i][1].get<int>());
  }
  CHECK(split_mjpeg(s.data(), 3).empty());
}

TEST_CASE("mjpeg: encoding round-trips through decoding") {
  Image img;
  img.width = 80;
  img.height = 60;
  img.pixels.resize(80 * 60 * 3);
  for (int y = 0; y < 60; ++y)
    for (int x = 0; x < 80; ++x) {
      uint8_t* p = img.row(y) + x * 3;
      p[0] = uint8_t(x * 3);
      p[1] = uint8_t(y * 4);
      p[2] = 90;
    }
  JpegEncoder enc;
  const std::vector<uint8_t> a = enc.encode(img, 95);
  const std::vector<uint8_t> b = enc.encode(img, 95);  // the reused buffer gives the same bytes
  CHECK(a == b);
  std::vector<char> chars(a.begin(), a.end());
  const Image back = decode_image_memory(chars, "encoded");  // stb_image: independent decoder
  REQUIRE(back.pixels.size() == img.pixels.size());
  double err = 0;
  for (size_t i = 0; i < img.pixels.size(); ++i)
    err += std::abs(int(back.pixels[i]) - int(img.pixels[i]));
  CHECK(err / double(img.pixels.size()) < 3.0);
  CHECK_THROWS_AS(enc.encode(img, 0), ConfigError);
}

// ----------------------------------------------------------------------------- geometry

TEST_CASE("geometry: centre crop to the network's aspect and the JPEG decode scale") {
  CHECK(center_crop_box(640, 480, 96, 96) == CropBox{80, 0, 480, 480});
  CHECK(center_crop_box(480, 640, 1, 1) == CropBox{0, 80, 480, 480});
  CHECK(center_crop_box(640, 480, 160, 90) == CropBox{0, 60, 640, 360});
  CHECK(center_crop_box(641, 480, 1, 1) == CropBox{80, 0, 480, 480});  // odd pixel to the right
  CHECK(center_crop_box(100, 100, 100, 100) == CropBox{0, 0, 100, 100});
  CHECK_THROWS_AS(center_crop_box(0, 10, 1, 1), ShapeError);
  // 640x480 for 96x96: 1/8 gives 80x60 (crop 60 < 96); 1/4 gives 160x120 (crop 120 >= 96).
  CHECK(choose_decode_scale(640, 480, 96, 96) == 4);
  CHECK(choose_decode_scale(640, 480, 224, 224) == 2);  // 320x240: crop 240 >= 224
  CHECK(choose_decode_scale(640, 480, 250, 250) == 1);  // 240 < 250 at 1/2
  CHECK(choose_decode_scale(1280, 720, 96, 96) == 4);   // 1/8: 160x90, crop 90 < 96
  CHECK(choose_decode_scale(1920, 1080, 96, 96) == 8);  // 1/8: 240x135, crop 135
  CHECK(choose_decode_scale(640, 480, 0, 0) == 1);
  CHECK(choose_decode_scale(641, 481, 80, 60) == 8);  // ceil: 81x61 holds 80x60
}

TEST_CASE("pipeline: smoothing is the mean of the last N frames and top_k ranks") {
  Smoother s(3);
  CHECK(s.add({1, 0}) == std::vector<float>{1, 0});
  CHECK(s.add({0, 1}) == std::vector<float>{0.5f, 0.5f});
  const auto m = s.add({0, 1});
  CHECK(m[0] == doctest::Approx(1.0 / 3));
  const auto m2 = s.add({0, 1});  // the first frame left the window
  CHECK(m2 == std::vector<float>{0, 1});
  CHECK_THROWS_AS(Smoother(0), ConfigError);
  Smoother one(1);
  CHECK(one.add({0.2f, 0.8f}) == std::vector<float>{0.2f, 0.8f});
  CHECK(one.add({0.9f, 0.1f}) == std::vector<float>{0.9f, 0.1f});

  const auto t = top_k({0.1f, 0.5f, 0.2f, 0.2f}, {"a", "b", "c", "d"}, 3);
  REQUIRE(t.size() == 3);
  CHECK(t[0].label == "b");
  CHECK(t[1].label == "c");  // tie: lower index first
  CHECK(t[2].label == "d");
  CHECK(top_k({0.5f}, {"x"}, 5).size() == 1);

  Image img;
  img.width = 4;
  img.height = 2;
  img.pixels = {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 10, 10, 10, 11, 11, 11, 12, 12, 12, 13, 13, 13};
  CHECK(crop_image(img, {1, 0, 2, 2}).pixels ==
        std::vector<uint8_t>{1, 1, 1, 2, 2, 2, 11, 11, 11, 12, 12, 12});
  CHECK_THROWS_AS(crop_image(img, {3, 0, 2, 2}), ShapeError);
}

TEST_CASE("slots: the latest value wins and waiting wakes on put and close") {
  LatestSlot<int> slot;
  uint64_t seen = 0;
  CHECK(!slot.wait_newer(seen, 1));
  slot.put(1);
  slot.put(2);
  slot.put(3);
  auto v = slot.wait_newer(seen, 1);
  REQUIRE(v);
  CHECK(*v == 3);  // 1 and 2 were replaced, never queued
  CHECK(seen == 3);
  CHECK(!slot.wait_newer(seen, 1));
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    slot.put(4);
  });
  v = slot.wait_newer(seen, 5000);
  t.join();
  REQUIRE(v);
  CHECK(*v == 4);
  slot.close();
  const auto t0 = Clock::now();
  CHECK(!slot.wait_newer(seen, 5000));
  CHECK(seconds_between(t0, Clock::now()) < 1.0);  // close() does not wait out the timeout
}

TEST_CASE("classifier: a model file that is not a classifier is refused") {
  const std::string dir = temp_dir("notclf");
  // No class names.
  const std::string nameless = save_colour_model(dir, {});
  CHECK(has(error_of<ConfigError>([&] { FrameClassifier::from_file(nameless); }),
            "names no classes"));
  // Output of rank 3 (a feature map): not a classifier.
  Sequential fm("features");
  fm.add<Conv2D>("conv", 4, 3);
  fm.build(Shape{8, 8, 3});
  save_model_file(fm, ModelInfo{}, dir + "/fm.mcnn");
  const std::string m =
      error_of<ConfigError>([&] { FrameClassifier::from_file(dir + "/fm.mcnn"); });
  CHECK(has(m, "is not a classifier"));
  CHECK(has(m, "(None, 6, 6, 4)"));
  // Scores without a softmax are refused at the first frame.
  Sequential lin("linear");
  lin.add<GlobalAveragePooling2D>("gap");
  lin.add<Dense>("fc", 2);
  lin.build(Shape{4, 4, 3});
  ModelInfo li;
  li.class_names = {"a", "b"};
  save_model_file(lin, li, dir + "/lin.mcnn");
  FrameClassifier c = FrameClassifier::from_file(dir + "/lin.mcnn");
  CHECK(has(error_of<ConfigError>([&] { c.classify(solid(8, 8, 255, 255, 255)); }), "softmax"));
  fs::remove_all(dir);
}

TEST_CASE("classifier: centre crop then resize then preprocessing as the model says") {
  const std::string dir = temp_dir("clf");
  FrameClassifier c = FrameClassifier::from_file(save_colour_model(dir, {"red", "green"}));
  CHECK(c.input_width() == 16);
  CHECK(c.input_height() == 16);
  StageTimes t;
  auto p = c.classify(solid(64, 48, 255, 0, 0), &t);
  CHECK(p[0] > 0.99f);
  CHECK(t.network_ms >= 0);
  // A wide frame: red in the middle, green bands left and right outside the centre crop.
  Image frame = solid(64, 32, 0, 255, 0);
  for (int y = 0; y < 32; ++y)
    for (int x = 16; x < 48; ++x) {
      uint8_t* px = frame.row(y) + x * 3;
      px[0] = 255;
      px[1] = 0;
    }
  CHECK(c.classify(frame)[0] > 0.99f);
  const Image in = c.network_input(frame);
  CHECK(in.width == 16);
  CHECK(in.height == 16);
  for (size_t i = 0; i < in.pixels.size(); i += 3) CHECK(in.pixels[i] == 255);
  CHECK(c.classify(solid(30, 30, 0, 200, 0))[1] > 0.99f);
  fs::remove_all(dir);
}

// ----------------------------------------------------------------------------- recorder

TEST_CASE("recorder: class names stay one folder inside --out and numbering continues") {
  const std::string dir = temp_dir("rec");
  for (const std::string& bad : std::vector<std::string>{"", ".", "..", "a/b", "../x", "x/..",
                                                         "a\\b", ".hidden", "a..b", "tab\there"}) {
    RecordOptions o;
    o.out_dir = dir;
    o.class_name = bad;
    CHECK_THROWS_AS(FrameRecorder{o}, ConfigError);
  }
  CHECK(fs::is_empty(dir));
  // A class folder that is a link leading outside --out is refused.
  const std::string outside = temp_dir("rec_outside");
  fs::create_directory_symlink(outside, dir + "/sneaky");
  RecordOptions lo;
  lo.out_dir = dir;
  lo.class_name = "sneaky";
  CHECK(has(error_of<IoError>([&] { FrameRecorder r(lo); }), "outside"));

  fs::create_directories(dir + "/bear");
  std::ofstream(dir + "/bear/00007.jpg") << "x";  // from an earlier session
  RecordOptions o;
  o.out_dir = dir;
  o.class_name = "bear";
  FrameRecorder rec(o);
  Frame f;
  f.image = solid(40, 20, 10, 200, 30);
  f.full_width = 40;
  f.full_height = 20;
  const std::string p1 = rec.save(f);
  const std::string p2 = rec.save(f);
  CHECK(fs::path(p1).filename() == "00008.jpg");
  CHECK(fs::path(p2).filename() == "00009.jpg");
  CHECK(fs::canonical(p1).parent_path() == fs::canonical(dir + "/bear"));
  std::vector<char> bytes = read_file_bytes(p1);
  const Image back = decode_image_memory(bytes, p1);
  CHECK(back.width == 20);  // the centre crop at the 1:1 aspect
  CHECK(back.height == 20);
  CHECK(std::abs(int(back.pixels[1]) - 200) < 8);

  RecordOptions po = o;
  po.format = "png";
  po.full_frame = true;
  FrameRecorder prec(po);
  const std::string p3 = prec.save(f);
  CHECK(fs::path(p3).filename() == "00001.png");
  bytes = read_file_bytes(p3);
  CHECK(decode_image_memory(bytes, p3).pixels == f.image.pixels);  // PNG: lossless, whole frame
  CHECK(fs::is_empty(outside));
  fs::remove_all(dir);
  fs::remove_all(outside);
}

TEST_CASE("recorder: a reduced JPEG frame is saved from a full-size decode") {
  const std::string dir = temp_dir("rec_full");
  const std::vector<uint8_t> jpg = fixture("frame.jpg");
  ReplayOptions ro;
  ro.fps = 0;
  ro.decode.need_width = ro.decode.need_height = 8;
  fs::create_directories(dir + "/in");
  std::ofstream(dir + "/in/a.jpg", std::ios::binary)
      .write(reinterpret_cast<const char*>(jpg.data()), std::streamsize(jpg.size()));
  ImageFolderSource src(dir + "/in", ro);
  std::optional<Frame> f = src.next(100);
  REQUIRE(f);
  CHECK(f->scale == 4);  // 64x48 at 1/4 is 16x12: the 12x12 crop still covers 8x8
  CHECK(f->image.width == 16);
  RecordOptions o;
  o.out_dir = dir + "/out";
  o.class_name = "c";
  o.full_frame = true;
  FrameRecorder rec(o);
  std::vector<char> bytes = read_file_bytes(rec.save(*f));
  CHECK(decode_image_memory(bytes, "saved").width == 64);
  fs::remove_all(dir);
}

// ----------------------------------------------------------------------------- replay + server

TEST_CASE("replay: image folders in sorted order and MJPEG files frame by frame at a pace") {
  const std::string dir = temp_dir("replay");
  fs::create_directories(dir + "/b");
  write_png(dir + "/b/2.png", solid(8, 8, 0, 255, 0));
  write_png(dir + "/a.png", solid(8, 8, 255, 0, 0));
  write_png(dir + "/b/1.png", solid(8, 8, 0, 0, 255));
  std::ofstream(dir + "/notes.txt") << "not a picture";
  fs::create_directories(dir + "/.thumbs");
  write_png(dir + "/.thumbs/x.png", solid(8, 8, 1, 2, 3));
  write_png(dir + "/.hidden.png", solid(8, 8, 1, 2, 3));
  ReplayOptions o;
  o.fps = 50;
  o.loop = false;
  ImageFolderSource src(dir, o);
  CHECK(src.files() == std::vector<std::string>{"a.png", "b/1.png", "b/2.png"});
  std::vector<std::string> names;
  const auto t0 = Clock::now();
  while (!src.ended()) {
    if (auto f = src.next(200)) {
      names.push_back(f->name);
      CHECK(!f->jpeg);  // PNG: the server encodes it
    }
  }
  CHECK(names == src.files());
  CHECK(seconds_between(t0, Clock::now()) >= 2 / 50.0 - 1e-3);  // 3 frames at 50/s
  fs::create_directories(dir + "/empty");
  CHECK(has(error_of<IoError>([&] { ImageFolderSource e(dir + "/empty", o); }), "no pictures"));

  o.loop = true;
  o.fps = 0;
  MjpegFileSource mj(mt::fixtures_dir() + "/camera/stream.mjpeg", o);
  CHECK(mj.frame_count() == 3);
  std::vector<int> widths;
  for (int i = 0; i < 4; ++i) widths.push_back(mj.next(100)->image.width);
  CHECK(widths == std::vector<int>{64, 24, 64, 64});  // loops
  std::ofstream(dir + "/empty.mjpeg") << "no frames here";
  CHECK(has(error_of<FormatError>([&] { MjpegFileSource m(dir + "/empty.mjpeg", o); }),
            "no JPEG frame"));
  fs::remove_all(dir);
}

TEST_CASE("pipeline: replay to classifier to server and /status follows the frames' class") {
  const std::string dir = temp_dir("live");
  const std::string model = save_colour_model(dir, {"red", "green <&>\"'"});
  fs::create_directories(dir + "/frames");
  for (int i = 0; i < 4; ++i) {
    write_png(dir + "/frames/a" + std::to_string(i) + ".png", solid(64, 48, 230, 20, 20));
    write_png(dir + "/frames/b" + std::to_string(i) + ".png", solid(64, 48, 20, 230, 20));
  }
  FrameClassifier clf = FrameClassifier::from_file(model);
  ReplayOptions ro;
  ro.fps = 25;
  ro.decode.need_width = clf.input_width();
  ro.decode.need_height = clf.input_height();
  ImageFolderSource src(dir + "/frames", ro);
  LiveOptions lo;
  lo.smooth = 1;
  LiveClassifier live(src, clf, lo);
  ServerOptions so;
  so.port = 0;
  so.title = "<model>";
  so.source = src.describe();
  CameraServer server(live, so);
  const int port = server.start();
  CHECK(port > 0);
  live.start();

  httplib::Client cli("127.0.0.1", port);
  cli.set_read_timeout(5, 0);
  auto page = cli.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(has(page->body, "&lt;model&gt;"));
  CHECK(!has(page->body, "<model>"));
  CHECK(has(page->body, "/stream.mjpg"));

  std::set<std::string> labels;
  const auto t0 = Clock::now();
  nlohmann::json st;
  while (labels.size() < 2 && seconds_between(t0, Clock::now()) < 20) {
    auto r = cli.Get("/status");
    REQUIRE(r);
    st = nlohmann::json::parse(r->body);
    if (st["frame"].get<int64_t>() >= 0) {
      const std::string label = st["label"];
      labels.insert(label);
      const double prob = st["prob"];
      CHECK(prob > 0.99);
      const std::string name = st["frame_name"];
      // Frames a*.png are red, b*.png green; the status names the frame it classified.
      CHECK(label == (name[0] == 'a' ? "red" : "green <&>\"'"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  CHECK(labels == std::set<std::string>{"red", "green <&>\"'"});
  CHECK(st["frame_width"] == 64);
  CHECK(st["crop"] == nlohmann::json::array({8, 0, 48, 48}));
  CHECK(st["stream_passthrough"] == false);

  // The stream: multipart JPEG parts, each decodable, coloured like a replayed frame.
  std::string body;
  auto res = cli.Get("/stream.mjpg", [&](const char* data, size_t n) {
    body.append(data, n);
    size_t parts = 0;
    for (size_t p = body.find("--haribo-frame"); p != std::string::npos;
         p = body.find("--haribo-frame", p + 1))
      ++parts;
    return parts < 4;  // enough: cancel
  });
  CHECK(has(body, "Content-Type: image/jpeg"));
  const size_t start = body.find("\r\n\r\n") + 4, end = body.find("\r\n--haribo-frame", start);
  REQUIRE(end != std::string::npos);
  std::vector<char> jpeg(body.begin() + long(start), body.begin() + long(end));
  const Image frame = decode_image_memory(jpeg, "stream part");
  CHECK(frame.width == 64);
  CHECK((frame.pixels[0] > 200 || frame.pixels[1] > 200));
  // A second server cannot take the same port (no SO_REUSEPORT sharing).
  ServerOptions same = so;
  same.port = port;
  CameraServer second(live, same);
  CHECK(has(error_of<IoError>([&] { second.start(); }), "in use"));
  auto one = cli.Get("/frame.jpg");
  REQUIRE(one);
  CHECK(one->get_header_value("Content-Type") == "image/jpeg");
  CHECK(server.frames_streamed() >= 1);

  server.stop();
  live.stop();
  CHECK(live.error().empty());
  fs::remove_all(dir);
}

TEST_CASE("pipeline: a source that ends finishes the live classifier and a failing one reports") {
  const std::string dir = temp_dir("end");
  FrameClassifier clf = FrameClassifier::from_file(save_colour_model(dir, {"red", "green"}));
  ReplayOptions ro;
  ro.fps = 0;
  ro.loop = false;
  MjpegFileSource src(mt::fixtures_dir() + "/camera/stream.mjpeg", ro);
  LiveClassifier live(src, clf);
  live.start();
  for (int i = 0; i < 500 && !live.finished(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(live.finished());
  auto st = live.status().get();
  REQUIRE(st);
  CHECK(st->finished);
  CHECK(st->captured == 3);
  CHECK(st->classified >= 1);
  CHECK(st->error.empty());
  live.stop();

  FakeCamera cam;
  cam.payloads.push_back(fixture("frame_nodht.jpg"));
  cam.unplug_after = 1;
  cam.absent_opens = 1000;
  V4l2SourceOptions vo;
  vo.quiet = true;
  vo.reconnect_timeout_s = 0.2;
  vo.retry_interval_s = 0.05;
  V4l2Source cs(cam, "/dev/video0", vo);
  LiveClassifier live2(cs, clf);
  live2.start();
  for (int i = 0; i < 500 && !live2.finished(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(live2.finished());
  CHECK(has(live2.error(), "did not come back"));
  live2.stop();
  CHECK(cam.open_fds == 0);
  fs::remove_all(dir);
}

TEST_CASE("server: status JSON escapes names and survives invalid UTF-8") {
  LiveStatus s;
  s.top = {{0, "bad \xff name", 0.5f}, {1, "quote \" <tag>", 0.25f}};
  const std::string j = status_json(s, "src", 1.5, false, 3, 1);
  const nlohmann::json p = nlohmann::json::parse(j);
  CHECK(p["top"][0]["label"] == "bad \xEF\xBF\xBD name");
  CHECK(p["top"][1]["label"] == "quote \" <tag>");
  CHECK(p["times_ms"]["encode"] == 1.5);
  CHECK(html_escape("<a href=\"x\">'&'</a>") ==
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
}
