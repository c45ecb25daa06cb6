// minicnn::plot umbrella header: charts (PNG and SVG through cairo), PNG encoding, HTML escaping
// and base64, and the HTML run report. Needs the minicnn::plot CMake target (cairo).
#pragma once
#include "axes.hpp"
#include "canvas.hpp"
#include "charts.hpp"
#include "html.hpp"
#include "png.hpp"
#include "report.hpp"
#include "rgb_image.hpp"
#include "utf8.hpp"
