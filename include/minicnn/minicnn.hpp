// minicnn umbrella header: everything except the V4L2 camera
// (include <minicnn/camera/v4l2.hpp> for that).
#pragma once
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "core/random.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "data/image.hpp"
#include "io/npy.hpp"
#include "kernels/activation.hpp"
#include "kernels/conv_geometry.hpp"
#include "layers/initializers.hpp"
#include "layers/layer.hpp"
