// DropoutT<T>: Keras Dropout(rate) with inverted scaling: in training mode each
// element is zeroed with probability `rate` and the kept ones are multiplied by
// 1/(1-rate), so inference is the identity. The mask of the k-th training forward
// comes from KeyedRng(seed, k), one uniform draw per element in memory order, so the
// layer's whole random state is (seed, k): a checkpoint saves k (masks_drawn()) and a
// resumed run draws exactly the masks the uninterrupted run would have. As in Keras, only the
// training flag matters: Dropout has no weights, and freezing it (trainable = false) does not turn
// it off; a frozen base with a trainable head keeps the head's regularisation.
#pragma once
#include <string>

#include "../core/random.hpp"
#include "layer.hpp"

namespace minicnn {

template <typename T>
class DropoutT : public LayerT<T> {
 public:
  DropoutT(std::string name, double rate, uint64_t seed = 0)
      : LayerT<T>(std::move(name)), rate_(rate), seed_(seed) {
    if (!(rate >= 0.0 && rate < 1.0))
      throw ConfigError("Dropout '" + this->name_ + "': rate must be in [0, 1), got " +
                        std::to_string(rate));
  }
  std::string type() const override { return "Dropout"; }
  nlohmann::json config() const override {
    return {{"name", this->name_}, {"rate", rate_}, {"seed", seed_}};
  }
  double rate() const { return rate_; }
  uint64_t seed() const { return seed_; }
  // Restarts the mask sequence: the next training forward draws what it drew after
  // construction with this seed (used by gradient checks and to resume training).
  void reseed(uint64_t seed) {
    seed_ = seed;
    masks_drawn_ = 0;
  }
  // Training forwards so far (the next mask is number masks_drawn()).
  uint64_t masks_drawn() const { return masks_drawn_; }
  void set_masks_drawn(uint64_t k) { masks_drawn_ = k; }
  // Mask of the last training forward: 0 or 1/(1-rate) per element.
  const Tensor<T>& mask() const { return mask_; }

 protected:
  Shape build_impl(const Shape& in) override { return in; }

  const Tensor<T>& forward_impl(ConstView<T> x, bool training) override {
    this->output_.resize(x.shape());
    const int64_t n = x.size();
    const T* xp = x.data();
    T* y = this->output_.data();
    masked_ = training && rate_ > 0.0;
    if (!masked_) {
      std::copy(xp, xp + n, y);
      return this->output_;
    }
    mask_.resize(x.shape());
    const T keep_scale = T(1.0 / (1.0 - rate_));
    T* m = mask_.data();
    KeyedRng rng(seed_, masks_drawn_++);
    for (int64_t i = 0; i < n; ++i) m[i] = rng.uniform() < rate_ ? T(0) : keep_scale;
    for (int64_t i = 0; i < n; ++i) y[i] = xp[i] * m[i];
    return this->output_;
  }

  const Tensor<T>& backward_impl(ConstView<T> dy, bool need_input_grad) override {
    if (!need_input_grad) return this->empty_;
    this->input_grad_tensor(dy.shape());
    const int64_t n = dy.size();
    const T* g = dy.data();
    T* dx = this->dinput_.data();
    if (masked_) {
      const T* m = mask_.data();
      for (int64_t i = 0; i < n; ++i) dx[i] = g[i] * m[i];
    } else {
      std::copy(g, g + n, dx);
    }
    return this->dinput_;
  }

 private:
  double rate_;
  uint64_t seed_;
  uint64_t masks_drawn_ = 0;
  Tensor<T> mask_;
  bool masked_ = false;  // whether the last forward applied a mask
};

using Dropout = DropoutT<float>;

}  // namespace minicnn
