#include "btm/train/schedule.hpp"

#include <algorithm>
#include <cmath>

namespace btm {

double LrSchedule::at(long step) const {
  if (warmup_steps > 0 && step <= warmup_steps) return peak * double(step) / double(warmup_steps);
  const double floor = peak * floor_ratio;
  const long decay_steps = std::max(1L, total_steps - warmup_steps);
  const double progress = std::clamp(double(step - warmup_steps) / double(decay_steps), 0.0, 1.0);
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * progress));
}

}  // namespace btm
