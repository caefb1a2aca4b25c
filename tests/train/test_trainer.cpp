// The training loop: loss falls, exact resume, NaN handling, checkpoints and metrics; MoE
// models: the same results at any rank count, exact resume, frozen experts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "btm/model/llama.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/trainer.hpp"
#include "support/error_of.hpp"
#include "support/test_paths.hpp"
#include "synthetic_data.hpp"

namespace {

btm::Deck tiny_deck(const std::filesystem::path& dir) {
  btm::Deck deck;
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
  deck.train.lr = 1e-2;
  deck.train.warmup_fraction = 0.1;
  deck.train.log_every = 5;
  deck.train.eval_every = 10;
  deck.train.eval_batches = 2;
  deck.train.checkpoint_every = 5;
  return deck;
}

btm::TrainJob tiny_job(const btm::Deck& deck, const std::string& file, std::uint64_t steps) {
  btm::TrainJob job;
  job.phase = "seed";
  job.name = "seed";
  job.file = deck.run.out_dir / file;
  job.domains = {"alpha", "beta"};
  job.valid_domains = {"alpha", "beta"};
  job.tokens = steps * deck.train.global_batch * deck.model.max_position_embeddings;
  job.train = deck.train;
  return job;
}

const auto fresh_start = [] { return btm::StartPoint{}; };

std::filesystem::path make_data(const std::string& name) {
  auto dir = btm::test::fresh_dir(name);
  if (btm::Comm::world().is_root()) btm::test::write_synthetic_data(dir / "data.h5", {"alpha", "beta"}, 40, 20000, 5);
  btm::Comm::world().barrier();
  return dir;
}

}  // namespace

// The trainer's gradient sum: each bucket started as the last micro-batch's backward pass
// finishes it, against one allreduce of the whole buffer after the backward pass.
TEST(TrainerGradientSum, BucketsStartedDuringTheBackwardPassGiveTheWholeBufferSum) {
  const btm::Comm world = btm::Comm::world();
  btm::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.vocab_size = 61;
  c.max_position_embeddings = 16;
  auto backend = btm::make_backend("cpu");
  btm::Llama blocking(c, *backend), bucketed(c, *backend);
  blocking.init_weights(5);
  bucketed.init_weights(5);
  std::vector<std::int32_t> tokens(2 * 2 * 17);
  for (std::size_t i = 0; i < tokens.size(); ++i) tokens[i] = std::int32_t((i * 7 + 13 * world.rank()) % 61);
  auto reducer = backend->make_allreducer(world);
  const auto buckets = bucketed.gradient_buckets();
  const std::size_t total = blocking.layout().total();
  blocking.zero_grads();
  bucketed.zero_grads();
  for (int i = 0; i < 2; ++i) blocking.accumulate_gradients(tokens.data() + i * 2 * 17, 2, 16, 0.01f);
  reducer->sum(blocking.grads(), total);
  bucketed.accumulate_gradients(tokens.data(), 2, 16, 0.01f);
  bucketed.accumulate_gradients(tokens.data() + 2 * 17, 2, 16, 0.01f, [&](int b) {
    reducer->progress();
    reducer->start_sum(bucketed.grads() + buckets[b].first, buckets[b].second);
  });
  reducer->wait();
  std::vector<float> want(total), got(total);
  backend->copy_to_host(want.data(), blocking.grads(), total * sizeof(float));
  backend->copy_to_host(got.data(), bucketed.grads(), total * sizeof(float));
  if (world.size() <= 2) {
    EXPECT_EQ(got, want);
  } else {  // the order in which the ranks' contributions are added may differ
    for (std::size_t i = 0; i < total; ++i) ASSERT_NEAR(got[i], want[i], 1e-6 * (1 + std::abs(want[i]))) << i;
  }
}

TEST(Trainer, LossFallsAndMetricsAreStored) {
  auto dir = make_data("trainer_falls");
  auto deck = tiny_deck(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  auto job = tiny_job(deck, "seed.h5", 30);
  EXPECT_EQ(btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start),
            btm::TrainOutcome::completed);
  btm::Comm::world().barrier();
  auto state = btm::read_train_state(job.file);
  EXPECT_TRUE(state.complete);
  EXPECT_EQ(state.step, 30);
  EXPECT_EQ(state.tokens, 30u * 8 * 16);
  ASSERT_EQ(state.metrics.loss.size(), 30u);
  EXPECT_LT(state.metrics.loss.back(), 0.6 * state.metrics.loss.front());
  EXPECT_EQ(state.metrics.valid_step, (std::vector<std::int64_t>{10, 20, 30}));
  ASSERT_EQ(state.metrics.valid.at("alpha").size(), 3u);
  EXPECT_LT(state.metrics.valid.at("beta").back(), state.metrics.valid.at("beta").front());
  // A finished model is skipped on re-run.
  EXPECT_EQ(btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start),
            btm::TrainOutcome::already_complete);
}

TEST(Trainer, InterruptedAndResumedRunIsBitwiseIdentical) {
  auto dir = make_data("trainer_resume");
  auto deck = tiny_deck(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  const btm::Comm world = btm::Comm::world();

  auto straight = tiny_job(deck, "straight.h5", 20);
  btm::train_model(deck, data, *backend, world, straight, fresh_start);

  auto resumed = tiny_job(deck, "resumed.h5", 20);
  resumed.name = straight.name;  // same init and data order
  btm::TrainControl stop;
  stop.stop_after_step = 7;  // between checkpoints (every 5): the stop writes its own
  EXPECT_EQ(btm::train_model(deck, data, *backend, world, resumed, fresh_start, stop),
            btm::TrainOutcome::interrupted);
  world.barrier();
  EXPECT_FALSE(btm::read_train_state(resumed.file).complete);
  EXPECT_EQ(btm::read_train_state(resumed.file).step, 7);
  EXPECT_EQ(btm::train_model(deck, data, *backend, world, resumed, fresh_start), btm::TrainOutcome::completed);
  world.barrier();

  auto a = btm::load_checkpoint(straight.file);
  auto b = btm::load_checkpoint(resumed.file);
  ASSERT_EQ(a.state.metrics.loss.size(), 20u);
  ASSERT_EQ(b.state.metrics.loss.size(), 20u);
  for (std::size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(a.state.metrics.loss[i], b.state.metrics.loss[i]) << "step " << i + 1;  // bitwise
  }
  EXPECT_EQ(a.model.params, b.model.params);
  EXPECT_EQ(a.m, b.m);
  EXPECT_EQ(a.state.cursor.consumed, b.state.cursor.consumed);
}

TEST(Trainer, NonFiniteLossStopsWithTheLastGoodCheckpointIntact) {
  auto dir = make_data("trainer_nan");
  auto deck = tiny_deck(dir);
  deck.train.lr = 1e12;  // diverges within a few steps
  deck.train.warmup_fraction = 0;
  deck.train.grad_clip = 0;
  deck.train.checkpoint_every = 1;
  deck.train.max_skipped_steps = 0;  // the first non-finite step stops it
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  auto job = tiny_job(deck, "nan.h5", 50);
  job.train = deck.train;
  try {
    btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start);
    FAIL() << "expected the run to stop";
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("intact"), std::string::npos) << e.what();
  }
  btm::Comm::world().barrier();
  auto ck = btm::load_checkpoint(job.file);
  EXPECT_FALSE(ck.state.complete);
  EXPECT_GE(ck.state.step, 1);
  for (double l : ck.state.metrics.loss) EXPECT_TRUE(std::isfinite(l));
}

TEST(Trainer, ResumingWithAnotherArchitectureIsRefused) {
  auto dir = make_data("trainer_arch");
  auto deck = tiny_deck(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  auto job = tiny_job(deck, "arch.h5", 10);
  btm::TrainControl stop;
  stop.stop_after_step = 2;
  btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start, stop);
  btm::Comm::world().barrier();
  deck.model.hidden_size = 48;
  deck.model.intermediate_size = 96;
  EXPECT_THROW(btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start), btm::Error);
}

std::string train_error(const btm::Deck& deck, const btm::Dataset& data, const btm::TrainJob& job) {
  auto backend = btm::make_backend("cpu");
  return btm::test::error_of([&] { btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start); });
}

TEST(Trainer, AFinishedModelOfAnotherArchitectureIsNotSkippedAsDone) {
  auto dir = make_data("trainer_done_arch");
  auto deck = tiny_deck(dir);
  btm::Dataset data(dir / "data.h5");
  auto job = tiny_job(deck, "done.h5", 3);
  auto backend = btm::make_backend("cpu");
  ASSERT_EQ(btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start),
            btm::TrainOutcome::completed);
  btm::Comm::world().barrier();
  deck.model.num_hidden_layers = 3;
  const std::string err = train_error(deck, data, job);
  EXPECT_NE(err.find("done.h5 holds another model than the deck's [model] (file vs deck: "
                     "num_hidden_layers 2 vs 3)"), std::string::npos) << err;
  EXPECT_TRUE(btm::read_train_state(job.file).complete);  // the finished model is left alone
}

TEST(Trainer, AModelTrainedOnAnotherTokenizerIsRefused) {
  auto dir = make_data("trainer_tokenizer");
  auto deck = tiny_deck(dir);
  auto job = tiny_job(deck, "tok.h5", 3);
  {
    btm::Dataset data(dir / "data.h5");
    auto backend = btm::make_backend("cpu");
    btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start);
  }
  btm::Comm::world().barrier();
  // The same domains re-prepared with another tokenizer (same vocabulary size).
  if (btm::Comm::world().is_root()) {
    btm::test::write_synthetic_data(dir / "other.h5", {"alpha", "beta"}, 40, 20000, 6, "another tokenizer");
  }
  btm::Comm::world().barrier();
  btm::Dataset other(dir / "other.h5");
  const std::string err = train_error(deck, other, job);
  EXPECT_NE(err.find("tok.h5 was trained with another tokenizer than"), std::string::npos) << err;
}

TEST(Trainer, AModelOfAnotherContextIsNeitherSkippedNorResumed) {
  auto dir = make_data("trainer_context");
  auto deck = tiny_deck(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  auto job = tiny_job(deck, "ctx.h5", 3);
  btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start);
  btm::Comm::world().barrier();
  deck.model.max_position_embeddings = 8;
  const std::string err = train_error(deck, data, job);
  EXPECT_NE(err.find("ctx.h5 holds another model than the deck's [model] (file vs deck: context 16 vs 8)"),
            std::string::npos) << err;
}

TEST(Trainer, ACheckpointBeyondANowSmallerBudgetIsRefusedNotLeftUnfinished) {
  auto dir = make_data("trainer_shrunk");
  auto deck = tiny_deck(dir);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  auto job = tiny_job(deck, "shrunk.h5", 10);
  btm::TrainControl stop;
  stop.stop_after_step = 6;
  ASSERT_EQ(btm::train_model(deck, data, *backend, btm::Comm::world(), job, fresh_start, stop),
            btm::TrainOutcome::interrupted);
  btm::Comm::world().barrier();
  auto smaller = tiny_job(deck, "shrunk.h5", 4);
  const std::string err = train_error(deck, data, smaller);
  EXPECT_NE(err.find("shrunk.h5 is an interrupted checkpoint at step 6, but the deck now plans only 4 steps"),
            std::string::npos) << err;
  EXPECT_EQ(btm::read_train_state(job.file).step, 6);  // left as it was
  // A larger budget resumes and finishes.
  auto larger = tiny_job(deck, "shrunk.h5", 12);
  EXPECT_EQ(btm::train_model(deck, data, *backend, btm::Comm::world(), larger, fresh_start),
            btm::TrainOutcome::completed);
  btm::Comm::world().barrier();
  EXPECT_EQ(btm::read_train_state(job.file).step, 12);
}

// ---- MoE models -------------------------------------------------------------------------

btm::Deck tiny_moe_deck(const std::filesystem::path& dir, const std::string& routing) {
  btm::Deck deck = tiny_deck(dir);
  deck.model.num_local_experts = 3;
  deck.model.num_experts_per_tok = 2;
  deck.model.moe_routing = routing;
  deck.model.moe_capacity_factor = 1.0;  // switch: some tokens of a micro-batch are dropped
  deck.model.router_aux_loss_coef = 0.05;
  return deck;
}

class MoeTrainer : public testing::TestWithParam<std::string> {};

// Per-micro-batch routing (capacity, sampling noise, load balancing) sees the same sequences
// at any rank count: the world's run matches one rank training alone.
TEST_P(MoeTrainer, DataParallelTrainingMatchesASingleRank) {
  const std::string routing = GetParam();
  const btm::Comm world = btm::Comm::world();
  auto dir = make_data("moe_trainer_dp_" + routing);
  auto deck = tiny_moe_deck(dir, routing);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  auto job = tiny_job(deck, "world.h5", 6);
  ASSERT_EQ(btm::train_model(deck, data, *backend, world, job, fresh_start), btm::TrainOutcome::completed);
  world.barrier();
  // On rank 0 only, in a function of its own: a failed assertion returns from it, not past the barrier.
  auto compare_with_one_rank = [&] {
    auto alone = tiny_job(deck, "alone.h5", 6);
    alone.name = job.name;  // same init, data order and routing noise
    ASSERT_EQ(btm::train_model(deck, data, *backend, btm::Comm(MPI_COMM_SELF), alone, fresh_start),
              btm::TrainOutcome::completed);
    const auto a = btm::load_checkpoint(job.file), b = btm::load_checkpoint(alone.file);
    ASSERT_EQ(a.state.metrics.aux_loss.size(), 6u);
    ASSERT_EQ(b.state.metrics.aux_loss.size(), 6u);
    for (std::size_t i = 0; i < 6; ++i) {
      // Only the order of the gradient sums differs.
      EXPECT_NEAR(a.state.metrics.loss[i], b.state.metrics.loss[i], 1e-5 * b.state.metrics.loss[i]) << i;
      EXPECT_NEAR(a.state.metrics.aux_loss[i], b.state.metrics.aux_loss[i], 1e-5 * b.state.metrics.aux_loss[i]) << i;
      EXPECT_GT(a.state.metrics.aux_loss[i], 0.0);
    }
    for (std::size_t i = 0; i < a.model.params.size(); i += 7) {
      ASSERT_NEAR(a.model.params[i], b.model.params[i], 1e-5) << i;
    }
    // Perfect balance costs coef (0.05) per layer with renormalised gates; fresh routers are close to it.
    if (routing == "top_k") EXPECT_NEAR(a.state.metrics.aux_loss.front(), 2 * 0.05, 0.02);
  };
  if (world.is_root()) compare_with_one_rank();
  world.barrier();
}

TEST_P(MoeTrainer, InterruptedAndResumedRunIsBitwiseIdentical) {
  const std::string routing = GetParam();
  const btm::Comm world = btm::Comm::world();
  auto dir = make_data("moe_trainer_resume_" + routing);
  auto deck = tiny_moe_deck(dir, routing);
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  auto straight = tiny_job(deck, "straight.h5", 8);
  btm::train_model(deck, data, *backend, world, straight, fresh_start);
  auto resumed = tiny_job(deck, "resumed.h5", 8);
  resumed.name = straight.name;
  btm::TrainControl stop;
  stop.stop_after_step = 3;
  EXPECT_EQ(btm::train_model(deck, data, *backend, world, resumed, fresh_start, stop), btm::TrainOutcome::interrupted);
  world.barrier();
  EXPECT_EQ(btm::train_model(deck, data, *backend, world, resumed, fresh_start), btm::TrainOutcome::completed);
  world.barrier();
  const auto a = btm::load_checkpoint(straight.file), b = btm::load_checkpoint(resumed.file);
  EXPECT_EQ(a.state.metrics.loss, b.state.metrics.loss);  // bitwise
  EXPECT_EQ(a.state.metrics.aux_loss, b.state.metrics.aux_loss);
  EXPECT_EQ(a.model.params, b.model.params);
  EXPECT_EQ(a.model.config.num_local_experts, 3);
  EXPECT_EQ(a.model.config.moe_routing, routing);
}

INSTANTIATE_TEST_SUITE_P(Routing, MoeTrainer, testing::Values("top_k", "switch", "sample_top1"));

TEST(MoeTrainerFrozen, FrozenExpertsStayAsTheyStartedWhileTheRestTrains) {
  const btm::Comm world = btm::Comm::world();
  auto dir = make_data("moe_trainer_frozen");
  auto deck = tiny_moe_deck(dir, "top_k");
  deck.train.weight_decay = 0.1;  // frozen tensors must not decay either
  btm::Dataset data(dir / "data.h5");
  auto backend = btm::make_backend("cpu");
  const btm::ModelConfig config = btm::resolve_model_config(deck, data);
  btm::Llama init(config, *backend);
  init.init_weights(21);
  const auto start = init.get_params();
  auto job = tiny_job(deck, "frozen.h5", 4);
  job.train_experts = false;
  ASSERT_EQ(btm::train_model(deck, data, *backend, world, job, [&] { return btm::StartPoint{start, {}, {}, 0, "init"}; }),
            btm::TrainOutcome::completed);
  world.barrier();
  const auto trained = btm::load_model(job.file).params;
  for (const auto& p : init.layout().params()) {
    const bool expert = p.name.find(".block_sparse_moe.experts.") != std::string::npos;
    const bool same = std::equal(start.begin() + p.offset, start.begin() + p.offset + p.numel, trained.begin() + p.offset);
    EXPECT_EQ(same, expert) << p.name;
  }
}
