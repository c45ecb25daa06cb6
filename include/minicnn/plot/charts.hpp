// The three chart kinds of a training run: curves (accuracy and loss per epoch), an image grid
// with captions, and the confusion matrix heat map.
#pragma once
#include "confusion_matrix.hpp"
#include "curves.hpp"
#include "image_grid.hpp"
