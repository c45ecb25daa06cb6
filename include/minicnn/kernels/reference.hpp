// Reference kernels: slow, obviously-correct implementations of every op, in
// minicnn::kernels::ref. They are the specification the fast kernels in
// kernels/*.hpp are tested against. One file per op under kernels/ref/.
#pragma once
#include "ref/batchnorm.hpp"
#include "ref/conv2d.hpp"
#include "ref/dense.hpp"
#include "ref/dwconv2d.hpp"
