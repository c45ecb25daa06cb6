// haribo_render: writes the synthetic gummy dataset (examples/gummy_renderer.hpp) that
// haribo_train uses when it is given no --data: DIR/<class>/<class>_NNNN.png, rendered
// deterministically from a seed. The images are drawn, not photographed; --sheet also writes a
// contact sheet of the first images of each class.
#include <CLI/CLI.hpp>
#include <minicnn/data/image.hpp>
#include <minicnn/plot/image_grid.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "gummy_renderer.hpp"

using namespace minicnn;

int main(int argc, char** argv) {
  gummies::GummyDatasetOptions o;
  std::string out, sheet;
  int sheet_per_class = 8;
  CLI::App app{
      "haribo_render: render a synthetic dataset of gummy-candy pictures (one sub-folder per "
      "class), the default training data of haribo_train. The images are synthetic (drawn with "
      "cairo), not photographs."};
  app.add_option("--out", out, "output folder: OUT/<class>/<class>_NNNN.png")->required();
  app.add_option("--per-class", o.per_class, "images per class")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--size", o.size, "image side in pixels")
      ->check(CLI::Range(16, 4096))
      ->capture_default_str();
  app.add_option("--seed", o.seed, "random seed (same seed, same bytes)")->capture_default_str();
  std::string all;
  for (const auto& c : gummies::supported_gummy_classes()) all += (all.empty() ? "" : ",") + c;
  app.add_option("--classes", o.classes, "comma-separated shapes, from: " + all)
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--threads", o.threads, "rendering threads (0: all cores; never changes output)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  app.add_option("--sheet", sheet, "also write a contact sheet PNG of the first images per class");
  app.add_option("--sheet-per-class", sheet_per_class, "images per class on the contact sheet")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    const gummies::GummyDatasetReport r = gummies::render_gummy_dataset(out, o);
    std::printf(
        "%s %lld synthetic gummy images (drawn, not photographs) of %zu classes, %dx%d px, "
        "seed %llu, in '%s' (%.2f s)\n",
        r.reused ? "Reused" : "Rendered", static_cast<long long>(r.images), r.classes.size(),
        o.size, o.size, static_cast<unsigned long long>(o.seed), r.dir.c_str(), r.seconds);
    std::string names;
    for (const auto& c : r.classes) names += (names.empty() ? "" : ", ") + c;
    std::printf("Classes: %s (%d each)\n", names.c_str(), o.per_class);
    if (!sheet.empty()) {
      std::vector<plot::GridItem> items;
      const int n = std::min(sheet_per_class, o.per_class);
      for (const auto& c : r.classes)
        for (int i = 0; i < n; ++i) {
          Image img = decode_image(out + "/" + c + "/" +
                                   gummies::gummy_detail::file_name(c, i, o.per_class));
          plot::RgbImage p;
          p.width = img.width;
          p.height = img.height;
          p.pixels = std::move(img.pixels);
          items.push_back({std::move(p), c});
        }
      plot::write_image_grid_png(items, n, sheet, std::min(160, std::max(64, o.size)),
                                 "Synthetic gummies (rendered, not photographs)");
      std::printf("Contact sheet: %s\n", sheet.c_str());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "haribo_render: %s\n", e.what());
    return 1;
  }
  return 0;
}
