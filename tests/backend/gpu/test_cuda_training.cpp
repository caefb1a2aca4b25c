// Training on the cuda backend against the cpu reference: a 20-step loss trajectory of
// btm::train_model from the same initial parameters and data order, and exact resume.
//
// Trajectory bound. Step 1's loss is the forward pass at the initial weights, where the two
// backends differ only by bf16 storage of activations (see test_cuda_model.cpp): relative
// 1e-3. Later steps also see the bf16 gradients' effect on AdamW's updates, and the
// differences compound. bf16_emulation.py runs a float64 PyTorch model of this deck (fp32
// master weights, AdamW, clipping, warmup + cosine) once exactly and once with a bf16 rounding
// wherever the cuda backend stores a compute tensor. At lr 5e-3 the two stayed within 0.15%
// of each other at every step over 10 seeds; the bound is 2% at every step. (At the trainer
// test's lr 1e-2 the runs are at the edge of stability: single steps differed by up to 7% and
// then re-converged, so this deck uses 5e-3.) The cuda loss must also fall: the mean of the
// last 5 steps below 0.7 x step 1 (the cpu backend reaches 0.53; the emulation's last step
// 0.44-0.57 of its first).
//
// Exact resume. The trainer promises bitwise-identical results after an interrupt on the
// same rank count. On a GPU that holds only when every kernel is deterministic: the cuda
// backend's reductions, RMSNorm weight gradient, cross-entropy, embedding gradient and
// fallback attention are (fixed-order sums, no atomics), and cuBLASLt is for a given
// algorithm, which is cached per shape. cuDNN's fused attention backward accumulates dQ
// through an fp32 buffer in an order cuDNN does not promise. So: with the fallback
// attention (BTM_CUDA_ATTENTION=fallback) resume is asserted bitwise (losses, parameters,
// moments); with the default (auto, cuDNN where it applies) the resumed run is asserted to
// follow the uninterrupted one within the cpu-vs-cuda trajectory bound.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"
#include "gpu_test_util.hpp"
#include "support/test_paths.hpp"
#include "train/synthetic_data.hpp"

namespace btm::test {
namespace {

constexpr int kSteps = 20;
constexpr double kFirstStepRel = 1e-3;
constexpr double kTrajectoryRel = 0.02;

// The deck of tests/train/test_trainer.cpp (2 layers, d = 32, 4 heads over 2 KV heads,
// context 16, 4 micro batches of 2 per step) with lr 5e-3.
Deck tiny_deck(const std::filesystem::path& dir) {
  Deck deck;
  deck.run.out_dir = dir;
  deck.run.seed = 99;
  deck.model.hidden_size = 32;
  deck.model.intermediate_size = 64;
  deck.model.num_hidden_layers = 2;
  deck.model.num_attention_heads = 4;
  deck.model.num_key_value_heads = 2;
  deck.model.max_position_embeddings = 16;
  deck.model.vocab_size = 0;
  deck.train.micro_batch = 2;
  deck.train.global_batch = 8;
  deck.train.lr = 5e-3;
  deck.train.warmup_fraction = 0.1;
  deck.train.log_every = 5;
  deck.train.eval_every = 10;
  deck.train.eval_batches = 2;
  deck.train.checkpoint_every = 5;
  return deck;
}

TrainJob tiny_job(const Deck& deck, const std::string& file) {
  TrainJob job;
  job.phase = "seed";
  job.name = "seed";  // the same name: the same initial parameters and data order
  job.file = deck.run.out_dir / file;
  job.domains = {"alpha", "beta"};
  job.valid_domains = {"alpha", "beta"};
  job.tokens = std::uint64_t(kSteps) * deck.train.global_batch * deck.model.max_position_embeddings;
  job.train = deck.train;
  return job;
}

std::filesystem::path make_data(const std::string& name) {
  auto dir = fresh_dir(name);
  if (Comm::world().is_root()) write_synthetic_data(dir / "data.h5", {"alpha", "beta"}, 40, 20000, 5);
  Comm::world().barrier();
  return dir;
}

const auto fresh_start = [] { return StartPoint{}; };

std::unique_ptr<Backend> cuda_backend(const char* attention) {
  ScopedEnv env("BTM_CUDA_ATTENTION", attention);  // read when the backend is made
  return make_backend("cuda");
}

std::vector<double> train_losses(Backend& backend, const Deck& deck, const Dataset& data, const std::string& file) {
  const auto job = tiny_job(deck, file);
  EXPECT_EQ(train_model(deck, data, backend, Comm::world(), job, fresh_start), TrainOutcome::completed);
  Comm::world().barrier();
  return read_train_state(job.file).metrics.loss;
}

void expect_on_trajectory(const std::vector<double>& got, const std::vector<double>& want, double first_rel,
                          const std::string& what) {
  ASSERT_EQ(got.size(), std::size_t(kSteps)) << what;
  ASSERT_EQ(want.size(), std::size_t(kSteps)) << what;
  EXPECT_LE(std::abs(got[0] - want[0]), first_rel * want[0]) << what << ": step 1 " << got[0] << " vs " << want[0];
  for (int i = 0; i < kSteps; ++i) {
    EXPECT_TRUE(std::isfinite(got[i])) << what << ": step " << i + 1;
    EXPECT_LE(std::abs(got[i] - want[i]), kTrajectoryRel * want[i])
        << what << ": step " << i + 1 << " loss " << got[i] << " vs " << want[i];
  }
}

// Runs `straight` uninterrupted and `resumed` stopped after step 7 (between checkpoints, so
// the stop writes its own) and resumed to the end; returns both checkpoints.
std::pair<Checkpoint, Checkpoint> straight_and_resumed(Backend& backend, const Deck& deck, const Dataset& data,
                                                       const std::string& tag) {
  const Comm world = Comm::world();
  const auto straight = tiny_job(deck, tag + "_straight.h5");
  EXPECT_EQ(train_model(deck, data, backend, world, straight, fresh_start), TrainOutcome::completed);
  const auto resumed = tiny_job(deck, tag + "_resumed.h5");
  TrainControl stop;
  stop.stop_after_step = 7;
  EXPECT_EQ(train_model(deck, data, backend, world, resumed, fresh_start, stop), TrainOutcome::interrupted);
  world.barrier();
  EXPECT_EQ(read_train_state(resumed.file).step, 7);
  EXPECT_EQ(train_model(deck, data, backend, world, resumed, fresh_start), TrainOutcome::completed);
  world.barrier();
  return {load_checkpoint(straight.file), load_checkpoint(resumed.file)};
}

TEST(CudaTraining, LossTrajectoryFollowsTheCpuBackendAndFalls) {
  const auto dir = make_data("cuda_trajectory");
  const auto deck = tiny_deck(dir);
  Dataset data(dir / "data.h5");
  auto cpu = make_backend("cpu");
  auto gpu = cuda_backend("auto");
  const auto want = train_losses(*cpu, deck, data, "cpu.h5");
  const auto got = train_losses(*gpu, deck, data, "cuda.h5");
  expect_on_trajectory(got, want, kFirstStepRel, "cuda vs cpu");
  ASSERT_EQ(got.size(), std::size_t(kSteps));
  double tail = 0;
  for (int i = kSteps - 5; i < kSteps; ++i) tail += got[i] / 5;
  EXPECT_LT(tail, 0.7 * got.front()) << "the cuda loss must fall";
  // Validation losses are computed on the device too.
  const auto gs = read_train_state(deck.run.out_dir / "cuda.h5");
  const auto cs = read_train_state(deck.run.out_dir / "cpu.h5");
  ASSERT_EQ(gs.metrics.valid.at("beta").size(), cs.metrics.valid.at("beta").size());
  for (std::size_t i = 0; i < gs.metrics.valid.at("beta").size(); ++i) {
    EXPECT_LE(std::abs(gs.metrics.valid.at("beta")[i] - cs.metrics.valid.at("beta")[i]),
              kTrajectoryRel * cs.metrics.valid.at("beta")[i]);
  }
}

TEST(CudaTraining, ResumeIsBitwiseIdenticalWithDeterministicKernels) {
  const auto dir = make_data("cuda_resume_exact");
  const auto deck = tiny_deck(dir);
  Dataset data(dir / "data.h5");
  auto gpu = cuda_backend("fallback");
  const auto [a, b] = straight_and_resumed(*gpu, deck, data, "fallback");
  ASSERT_EQ(a.state.metrics.loss.size(), std::size_t(kSteps));
  ASSERT_EQ(b.state.metrics.loss.size(), std::size_t(kSteps));
  for (int i = 0; i < kSteps; ++i) {
    EXPECT_EQ(a.state.metrics.loss[i], b.state.metrics.loss[i]) << "step " << i + 1;  // bitwise
  }
  EXPECT_EQ(a.model.params, b.model.params);
  EXPECT_EQ(a.m, b.m);
  EXPECT_EQ(a.v, b.v);
  EXPECT_EQ(a.state.cursor.consumed, b.state.cursor.consumed);
}

TEST(CudaTraining, ResumeWithDefaultAttentionStaysOnTheTrajectory) {
  const auto dir = make_data("cuda_resume_auto");
  const auto deck = tiny_deck(dir);
  Dataset data(dir / "data.h5");
  auto gpu = cuda_backend("auto");
  const auto [a, b] = straight_and_resumed(*gpu, deck, data, "auto");
  // Steps 1-7 ran in separate runs too; any difference is kernel nondeterminism only.
  expect_on_trajectory(b.state.metrics.loss, a.state.metrics.loss, kFirstStepRel, "resumed vs straight");
  EXPECT_EQ(a.state.cursor.consumed, b.state.cursor.consumed);
  EXPECT_TRUE(b.state.complete);
}

}  // namespace
}  // namespace btm::test
