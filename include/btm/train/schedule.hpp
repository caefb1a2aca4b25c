#pragma once
// Learning-rate schedule: linear warmup to the peak, then cosine decay to a floor.
namespace btm {

struct LrSchedule {
  double peak = 3e-3;
  double floor_ratio = 0.1;  // final lr = peak * floor_ratio
  long warmup_steps = 0;
  long total_steps = 1;
  // lr for optimizer step `step` (1-based): peak*step/warmup during warmup, then
  // floor + (peak - floor) * (1 + cos(pi * progress)) / 2 with progress from 0 to 1.
  double at(long step) const;
};

}  // namespace btm
