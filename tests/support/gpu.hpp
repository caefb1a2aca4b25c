#pragma once
// GPU detection for tests labelled "gpu": the whole suite is skipped (exit 77) when no
// CUDA device can be used.
namespace btm::test {
bool gpu_available();
// True when the environment has BTM_TEST_NEEDS_GPU=1 (btm_add_test sets it for LABELS gpu).
bool suite_needs_gpu();
}  // namespace btm::test
