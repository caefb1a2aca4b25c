// The training loop: loss falls, exact resume, NaN handling, checkpoints and metrics.
#include <gtest/gtest.h>

#include <cmath>

#include "btm/comm.hpp"
#include "btm/data/dataset.hpp"
#include "btm/error.hpp"
#include "btm/h5.hpp"
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
