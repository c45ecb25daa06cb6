// minicnn::plot: the charts (PNG and SVG through cairo), PNG encoding, base64, HTML escaping and
// the HTML report. Pictures are checked by decoding them with stb_image (an independent decoder)
// and looking at their pixels: size, not blank, the colours that must be there (and absent).
#include <minicnn/plot/plot.hpp>

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace minicnn;
using namespace minicnn::plot;
namespace fs = std::filesystem;

namespace {

using mt::temp_dir;

template <typename E, typename F>
void check_error(F&& fn, std::initializer_list<std::string> fragments) {
  try {
    fn();
    FAIL("expected an exception");
  } catch (const E& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments)
      CHECK_MESSAGE(msg.find(f) != std::string::npos,
                    "message '" << msg << "' lacks '" << f << "'");
  } catch (const std::exception& e) {
    FAIL("wrong exception kind: " << e.what());
  }
}

Image decode_png_file(const std::string& path) {
  return decode_image(path);
}
Image decode_png_bytes(const std::vector<uint8_t>& b) {
  return decode_image_memory(std::vector<char>(b.begin(), b.end()), "'memory'");
}

// Pixels within `tol` (per channel) of the colour.
int64_t count_near(const Image& im, int r, int g, int b, int tol, int x0 = 0, int x1 = -1) {
  if (x1 < 0) x1 = im.width;
  int64_t n = 0;
  for (int y = 0; y < im.height; ++y)
    for (int x = x0; x < x1; ++x) {
      const uint8_t* p = im.row(y) + 3 * x;
      if (std::abs(p[0] - r) <= tol && std::abs(p[1] - g) <= tol && std::abs(p[2] - b) <= tol) ++n;
    }
  return n;
}

double grey_variance(const Image& im) {
  double s = 0, s2 = 0;
  const double n = double(im.width) * im.height;
  for (std::size_t i = 0; i < im.pixels.size(); i += 3) {
    const double v = (im.pixels[i] + im.pixels[i + 1] + im.pixels[i + 2]) / 3.0;
    s += v, s2 += v * v;
  }
  return s2 / n - (s / n) * (s / n);
}

RgbImage solid(int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  RgbImage im;
  im.width = w, im.height = h;
  for (int i = 0; i < w * h; ++i) im.pixels.insert(im.pixels.end(), {r, g, b});
  return im;
}

Curves sample_curves(int epochs) {
  Curves c;
  c.title = "30 epochs";
  for (int e = 0; e < epochs; ++e) {
    const double t = e / double(std::max(1, epochs - 1));
    c.accuracy.push_back(0.55 + 0.42 * (1 - std::exp(-4 * t)));
    c.val_accuracy.push_back(0.6 + 0.3 * (1 - std::exp(-5 * t)));
    c.loss.push_back(1.4 * std::exp(-3 * t) + 0.12);
    c.val_loss.push_back(1.1 * std::exp(-3.5 * t) + 0.3);
  }
  c.best_epoch = epochs / 2;
  return c;
}

// The training colour (#1F6FB4) and the validation colour (#E8710A) of the curves.
int64_t train_pixels(const Image& im, int x0 = 0, int x1 = -1) {
  return count_near(im, 0x1F, 0x6F, 0xB4, 12, x0, x1);
}
int64_t val_pixels(const Image& im, int x0 = 0, int x1 = -1) {
  return count_near(im, 0xE8, 0x71, 0x0A, 12, x0, x1);
}

// An RFC 4648 decoder written independently of plot::base64 (strict: padding, alphabet).
bool unbase64(const std::string& s, std::vector<uint8_t>& out) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (s.size() % 4 != 0) return false;
  out.clear();
  for (std::size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      if (s[i + k] == '=' && i + 4 == s.size() && k >= 2) {
        v[k] = 0, ++pad;
      } else {
        if (pad) return false;
        v[k] = val(s[i + k]);
        if (v[k] < 0) return false;
      }
    }
    const uint32_t x = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out.push_back(uint8_t(x >> 16));
    if (pad < 2) out.push_back(uint8_t(x >> 8));
    if (pad < 1) out.push_back(uint8_t(x));
  }
  return true;
}

// Tags balance (void elements aside), every '<' opens a tag, and no raw '>' outside tags
// (text and attribute values must carry &gt;). Returns "" or what is wrong.
std::string tag_problem(const std::string& h) {
  static const char* kVoid[] = {"meta", "img", "br", "hr", "link", "input"};
  std::vector<std::string> stack;
  std::size_t i = 0;
  bool in_style = false;
  while (i < h.size()) {
    if (h[i] == '>' && !in_style) return "raw '>' at " + std::to_string(i);
    if (h[i] != '<') {
      ++i;
      continue;
    }
    const std::size_t end = h.find('>', i);
    if (end == std::string::npos) return "unterminated tag at " + std::to_string(i);
    std::string tag = h.substr(i + 1, end - i - 1);
    i = end + 1;
    if (!tag.empty() && tag[0] == '!') continue;  // doctype
    const bool closing = !tag.empty() && tag[0] == '/';
    std::size_t k = closing ? 1 : 0;
    std::string name;
    while (k < tag.size() && std::isalnum(static_cast<unsigned char>(tag[k]))) name += tag[k++];
    if (name.empty()) return "'<' that opens no tag: <" + tag + ">";
    if (tag.find('<') != std::string::npos) return "'<' inside tag <" + tag + ">";
    bool is_void = false;
    for (const char* v : kVoid) is_void |= name == v;
    if (is_void) continue;
    if (closing) {
      if (stack.empty() || stack.back() != name)
        return "</" + name + "> closes <" + (stack.empty() ? "" : stack.back()) + ">";
      stack.pop_back();
      if (name == "style") in_style = false;
    } else {
      stack.push_back(name);
      if (name == "style") in_style = true;
    }
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

TEST_CASE("base64: RFC 4648 test vectors and binary data") {
  auto b64 = [](const std::string& s) {
    return plot::base64(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  CHECK(b64("") == "");
  CHECK(b64("f") == "Zg==");
  CHECK(b64("fo") == "Zm8=");
  CHECK(b64("foo") == "Zm9v");
  CHECK(b64("foob") == "Zm9vYg==");
  CHECK(b64("fooba") == "Zm9vYmE=");
  CHECK(b64("foobar") == "Zm9vYmFy");
  // `printf '\x00\xff\xfe\x10\x80\x7f' | base64` (GNU coreutils)
  const uint8_t bin[] = {0x00, 0xff, 0xfe, 0x10, 0x80, 0x7f};
  CHECK(plot::base64(bin, sizeof bin) == "AP/+EIB/");
  std::vector<uint8_t> all(256), back;
  for (int i = 0; i < 256; ++i) all[i] = uint8_t(i);
  const std::string enc = plot::base64(all);
  CHECK(enc.size() == 344);
  REQUIRE(unbase64(enc, back));
  CHECK(back == all);
}

TEST_CASE("html_escape: markup, quotes, control characters, invalid UTF-8") {
  CHECK(html_escape("plain text 123") == "plain text 123");
  CHECK(html_escape("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;");
  CHECK(html_escape("a&b \"q\" 'p' <>") == "a&amp;b &quot;q&quot; &#39;p&#39; &lt;&gt;");
  CHECK(html_escape("&amp;") == "&amp;amp;");  // escaping is not idempotent, and must not be
  CHECK(html_escape("tab\tline\ncr\r") == "tab&#9;line&#10;cr&#13;");
  const std::string controls(
      "nul\0bell\x07"
      "del\x7f",
      13);
  CHECK(html_escape(controls) == "nul&#xFFFD;bell&#xFFFD;del&#xFFFD;");
  CHECK(html_escape("c1 \xC2\x85.") == "c1 &#xFFFD;.");  // U+0085 NEXT LINE is a control
  // valid UTF-8 passes through; invalid bytes, overlong forms and surrogates do not
  CHECK(html_escape("caf\xC3\xA9 \xF0\x9F\x8C\xBB") == "caf\xC3\xA9 \xF0\x9F\x8C\xBB");
  CHECK(html_escape("bad\xFF\xC3") == "bad&#xFFFD;&#xFFFD;");
  CHECK(html_escape("\xC0\xBC") == "&#xFFFD;&#xFFFD;");              // overlong '<'
  CHECK(html_escape("\xED\xA0\x80") == "&#xFFFD;&#xFFFD;&#xFFFD;");  // U+D800
}

TEST_CASE("encode_png: an RGB PNG that decodes to exactly the same pixels") {
  RgbImage im;
  im.width = 7, im.height = 5;
  for (int i = 0; i < 35; ++i)
    im.pixels.insert(im.pixels.end(), {uint8_t(i * 7), uint8_t(255 - i * 5), uint8_t(i * 37)});
  const std::vector<uint8_t> png = encode_png(im);
  REQUIRE(png.size() > 33);
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  CHECK(std::equal(sig, sig + 8, png.begin()));
  CHECK(png[24] == 8);  // IHDR bit depth
  CHECK(png[25] == 2);  // IHDR colour type: RGB, no alpha
  const Image back = decode_png_bytes(png);
  CHECK(back.width == 7);
  CHECK(back.height == 5);
  CHECK(back.pixels == im.pixels);

  RgbImage bad = im;
  bad.pixels.pop_back();
  check_error<ConfigError>([&] { encode_png(bad); }, {"encode_png", "105", "104"});
  check_error<ConfigError>([&] { encode_png(RgbImage{}); }, {"encode_png", "0x0"});
}

TEST_CASE("curves: PNG of the asked size with both series in both panels") {
  const std::string dir = temp_dir("plot_curves");
  const Curves c = sample_curves(30);
  write_curves_png(c, dir + "/c.png");
  const Image im = decode_png_file(dir + "/c.png");
  CHECK(im.width == 1200);
  CHECK(im.height == 450);
  CHECK(grey_variance(im) > 100);
  // both colours in the accuracy (left) and loss (right) halves, lines and legend swatches
  CHECK(train_pixels(im, 0, 600) > 500);
  CHECK(val_pixels(im, 0, 600) > 500);
  CHECK(train_pixels(im, 600, 1200) > 500);
  CHECK(val_pixels(im, 600, 1200) > 500);
  CHECK(count_near(im, 0x22, 0x22, 0x22, 20) > 300);  // text exists

  write_curves_png(c, dir + "/big.png", 2000, 700);
  const Image big = decode_png_file(dir + "/big.png");
  CHECK(big.width == 2000);
  CHECK(big.height == 700);
  CHECK(fs::remove(dir + "/c.png"));
  // no temporary file is left next to the pictures
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir))
    files += e.path().filename() == "big.png" ? 1 : 100;
  CHECK(files == 1);
  fs::remove_all(dir);
}

TEST_CASE("curves: empty series are omitted, NaN leaves a gap, 1 and 200 epochs") {
  const std::string dir = temp_dir("plot_curves_gaps");
  Curves c = sample_curves(30);
  c.val_accuracy.clear();
  c.val_loss.clear();
  c.accuracy[10] = NAN;
  c.loss[3] = INFINITY;
  write_curves_png(c, dir + "/noval.png", 900, 400);
  const Image im = decode_png_file(dir + "/noval.png");
  CHECK(im.width == 900);
  CHECK(im.height == 400);
  CHECK(train_pixels(im) > 1000);
  CHECK(val_pixels(im) == 0);  // neither line nor legend entry

  Curves only_val;
  only_val.val_loss = {0.9, NAN, 0.7};
  write_curves_png(only_val, dir + "/only_val.png");
  const Image ov = decode_png_file(dir + "/only_val.png");
  CHECK(train_pixels(ov) == 0);
  CHECK(val_pixels(ov, 600, 1200) > 50);

  Curves one;
  one.accuracy = {0.7};
  one.val_accuracy = {0.65};
  one.loss = {0.8};
  one.val_loss = {0.9};
  one.best_epoch = 0;
  write_curves_png(one, dir + "/one.png", 600, 300);
  CHECK(decode_png_file(dir + "/one.png").width == 600);

  write_curves_png(sample_curves(200), dir + "/long.png");
  write_curves_png(Curves{}, dir + "/empty.png");
  CHECK(grey_variance(decode_png_file(dir + "/empty.png")) > 10);  // axes and "no data"
  fs::remove_all(dir);
}

TEST_CASE("curves: SVG document") {
  const std::string dir = temp_dir("plot_curves_svg");
  write_curves_svg(sample_curves(12), dir + "/c.svg");
  const std::vector<char> bytes = read_file_bytes(dir + "/c.svg");
  const std::string svg(bytes.begin(), bytes.end());
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find("<svg") != std::string::npos);
  CHECK(svg.find("width=\"1200") != std::string::npos);
  CHECK(svg.find("</svg>") != std::string::npos);
  const std::vector<uint8_t> mem = render_curves_svg(sample_curves(12), 800, 300);
  CHECK(std::string(mem.begin(), mem.end()).find("height=\"300") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("curves: bad arguments and unwritable paths name the file") {
  const std::string dir = temp_dir("plot_curves_err");
  const Curves c = sample_curves(5);
  const std::string missing = dir + "/no/such/dir/c.png";
  check_error<IoError>([&] { write_curves_png(c, missing); }, {missing});
  check_error<IoError>([&] { write_curves_svg(c, dir + "/nope/c.svg"); }, {dir + "/nope/c.svg"});
  check_error<ConfigError>([&] { write_curves_png(c, dir + "/z.png", 0, 450); },
                           {dir + "/z.png", "0x450"});
  check_error<ConfigError>([&] { write_curves_png(c, dir + "/h.png", 100000, 450); },
                           {dir + "/h.png"});
  Curves bad = c;
  bad.best_epoch = 5;
  check_error<ConfigError>([&] { write_curves_png(bad, dir + "/b.png"); },
                           {dir + "/b.png", "best_epoch 5"});
  CHECK(fs::is_empty(dir));
  fs::remove_all(dir);
}

TEST_CASE("image grid: nearest-neighbour scaling to the cell, captions, odd inputs") {
  const std::string dir = temp_dir("plot_grid");
  // 2x1 image, red | green, scaled to 160x80 by nearest neighbour: 80x80 of each colour exactly
  RgbImage two = solid(2, 1, 255, 0, 0);
  two.pixels[3] = 0, two.pixels[4] = 255, two.pixels[5] = 0;
  // 2x2 black/white checker -> four 80x80 squares, two of them pure black
  RgbImage checker = solid(2, 2, 255, 255, 255);
  for (int i : {0, 3})
    checker.pixels[3 * i] = checker.pixels[3 * i + 1] = checker.pixels[3 * i + 2] = 0;
  std::vector<GridItem> items{{two, "red and green"}, {checker, "checker"}};
  for (int k = 0; k < 14; ++k)
    items.push_back({solid(96, 96, uint8_t(20 * k), 100, 200), "class_" + std::to_string(k)});
  items[5].caption = "mixed_berry_smoothie with a caption far too long for one cell";
  items[6].caption = std::string("bad utf-8 \xFF\xFE and control \x01\x1b");
  write_image_grid_png(items, 4, dir + "/g.png", 160, "Training image examples");
  const Image im = decode_png_file(dir + "/g.png");
  CHECK(im.width >= 4 * 160);
  CHECK(im.height >= 4 * 160);
  CHECK(count_near(im, 255, 0, 0, 0) == 80 * 80);
  CHECK(count_near(im, 0, 255, 0, 0) == 80 * 80);
  CHECK(count_near(im, 0, 0, 0, 0) == 2 * 80 * 80);
  CHECK(count_near(im, 20, 100, 200, 0) == 160 * 160);  // item k = 1 fills its cell
  CHECK(count_near(im, 0x22, 0x22, 0x22, 20) > 200);    // captions
  const std::vector<uint8_t> mem = render_image_grid_png(items, 16, 40);
  const Image one_row = decode_png_bytes(mem);
  CHECK(one_row.width > one_row.height * 5);

  check_error<ConfigError>([&] { write_image_grid_png({}, 4, dir + "/e.png"); }, {dir + "/e.png"});
  check_error<ConfigError>([&] { write_image_grid_png(items, 0, dir + "/e.png"); }, {"columns"});
  std::vector<GridItem> broken{{solid(4, 4, 1, 2, 3), "x"}};
  broken[0].image.pixels.resize(5);
  check_error<ConfigError>([&] { write_image_grid_png(broken, 1, dir + "/e.png"); },
                           {dir + "/e.png", "item 0"});
  check_error<IoError>([&] { write_image_grid_png(items, 4, dir + "/missing/g.png"); },
                       {dir + "/missing/g.png"});
  fs::remove_all(dir);
}

TEST_CASE("confusion matrix: 12, 40 and 100 classes with long names") {
  const std::string dir = temp_dir("plot_confusion");
  for (int n : {2, 12, 40, 100}) {
    std::vector<std::vector<int64_t>> counts(n, std::vector<int64_t>(n, 0));
    std::vector<std::string> names;
    for (int i = 0; i < n; ++i) {
      counts[i][i] = 50 + i;  // a perfect classifier: every diagonal cell has share 1
      names.push_back(i % 3 ? "mixed_berry_smoothie_" + std::to_string(i)
                            : "c" + std::to_string(i));
    }
    names[1] = "<script>alert(1)</script> \xFF";
    const std::string path = dir + "/cm" + std::to_string(n) + ".png";
    write_confusion_matrix_png(counts, names, path,
                               "validation, " + std::to_string(n) + " classes");
    const Image im = decode_png_file(path);
    INFO("classes: " << n << ", picture " << im.width << "x" << im.height);
    CHECK(im.width < 2000);
    CHECK(im.height < 2000);
    CHECK(grey_variance(im) > 100);
    // the darkest colour of the scale (#0C3470) fills the n diagonal cells
    const int64_t dark = count_near(im, 12, 52, 112, 2);
    const int cell = n <= 14 ? 64 : std::max(12, 900 / n);
    CHECK(dark >= int64_t(n) * (cell - 2) * (cell - 2) / 2);
    CHECK(dark <= int64_t(n) * cell * cell + 20000);  // plus the colour bar's dark end
  }
  check_error<ConfigError>(
      [&] {
        write_confusion_matrix_png({{1, 2}, {3, 4}}, {"a"}, dir + "/x.png");
      },
      {dir + "/x.png", "1 class names"});
  check_error<ConfigError>(
      [&] {
        write_confusion_matrix_png({{1, 2}, {3}}, {"a", "b"}, dir + "/x.png");
      },
      {"row 1"});
  check_error<ConfigError>(
      [&] {
        write_confusion_matrix_png({{1, -2}, {3, 4}}, {"a", "b"}, dir + "/x.png");
      },
      {"-2"});
  check_error<IoError>(
      [&] {
        write_confusion_matrix_png({{1, 2}, {3, 4}}, {"a", "b"}, dir + "/no/x.png");
      },
      {dir + "/no/x.png"});
  fs::remove_all(dir);
}

TEST_CASE("report: self-contained, escaped, every data: URI is a PNG") {
  const std::string dir = temp_dir("plot_report");
  const std::string evil_class = "<script>alert(1)</script>";
  const std::string evil_file = "data/x/\"&'<>.jpg";
  ReportData d;
  d.title = "run <1> & \"friends\"";
  d.settings = {{"data", "/data/<flowers>"}, {"batch size", "32"}};
  d.summary = {{"best epoch", "2"}, {"images/s", "118.4"}};
  for (int e = 1; e <= 3; ++e)
    d.epochs.push_back({e, 1.0 / e, 0.5 + 0.1 * e, NAN, NAN, 1e-3, 12.5});
  d.best_epoch = 1;
  d.classes = {{"daisy", 0.9, 0.8, 0.847, 10}, {evil_class, NAN, 0.0, NAN, 3}};
  d.mistakes.push_back({solid(24, 16, 200, 30, 30), evil_file, evil_class, "daisy", 0.93});
  d.mistakes.push_back({RgbImage{}, "no_thumbnail.jpg", "daisy", evil_class, 0.51});
  d.pictures.push_back({"curves <svg>", render_curves_png(sample_curves(3))});
  d.pictures.push_back(
      {"matrix", render_confusion_matrix_png({{3, 1}, {0, 2}}, {"daisy", evil_class})});
  const std::string h = render_report_html(d);

  CHECK(h.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(lower(h).find("<script") == std::string::npos);
  CHECK(h.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(h.find("data/x/&quot;&amp;&#39;&lt;&gt;.jpg") != std::string::npos);
  CHECK(h.find("run &lt;1&gt; &amp; &quot;friends&quot;") != std::string::npos);
  CHECK(h.find("/data/&lt;flowers&gt;") != std::string::npos);
  CHECK(h.find("<tr class=\"best\"><td class=\"n\">2") != std::string::npos);
  CHECK(h.find("val_loss") == std::string::npos);  // an all-NaN column is left out
  CHECK(h.find("93.0%") != std::string::npos);
  CHECK(tag_problem(h) == "");
  // nothing is loaded from elsewhere
  CHECK(h.find("http:") == std::string::npos);
  CHECK(h.find("https:") == std::string::npos);
  CHECK(h.find("url(") == std::string::npos);

  // every src= is a data: URI that decodes back to a PNG
  std::map<std::pair<int, int>, int> sizes;
  std::size_t pos = 0;
  int uris = 0;
  while ((pos = h.find("src=\"", pos)) != std::string::npos) {
    pos += 5;
    const std::string prefix = "data:image/png;base64,";
    REQUIRE(h.compare(pos, prefix.size(), prefix) == 0);
    const std::size_t end = h.find('"', pos);
    REQUIRE(end != std::string::npos);
    std::vector<uint8_t> png;
    REQUIRE(unbase64(h.substr(pos + prefix.size(), end - pos - prefix.size()), png));
    REQUIRE(png.size() > 8);
    CHECK(png[0] == 0x89);
    CHECK(std::string(png.begin() + 1, png.begin() + 4) == "PNG");
    const Image im = decode_png_bytes(png);
    sizes[{im.width, im.height}]++;
    ++uris;
  }
  CHECK(uris == 3);  // two pictures and one thumbnail (the other mistake has none)
  CHECK(sizes[{1200, 450}] == 1);
  CHECK(sizes[{24, 16}] == 1);

  write_report_html(d, dir + "/report.html");
  const std::vector<char> bytes = read_file_bytes(dir + "/report.html");
  CHECK(std::string(bytes.begin(), bytes.end()) == h);
  check_error<IoError>([&] { write_report_html(d, dir + "/missing/report.html"); },
                       {dir + "/missing/report.html"});
  ReportData bad = d;
  bad.pictures.push_back({"not a png", {1, 2, 3}});
  check_error<ConfigError>([&] { render_report_html(bad); }, {"not a png"});
  fs::remove_all(dir);
}
