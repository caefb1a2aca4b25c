// btm's loss and every gradient against the PyTorch reference in tests/reference/
// (float64, Hugging Face Llama semantics), on a checkpoint and batch written by btm.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "btm/h5.hpp"
#include "btm/model/llama.hpp"
#include "btm/model/model_file.hpp"
#include "support/test_paths.hpp"
#include "tiny_model.hpp"

namespace {

struct Case {
  int kv_heads;
  bool tied;
};

class PytorchReference : public testing::TestWithParam<Case> {};

double norm(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

TEST_P(PytorchReference, LossAndEveryGradientAgree) {
  const Case param = GetParam();
  btm::ModelConfig c = btm::test::tiny_config(param.kv_heads, param.tied);
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.vocab_size = 61;
  c.max_position_embeddings = 16;
  c.rope_theta = 500.0;  // small theta: positions matter within 16 tokens
  const int batch = 3, seq = 16;

  auto backend = btm::make_backend("cpu");
  btm::Llama model(c, *backend);
  model.init_weights(21);
  auto p = model.get_params();
  for (auto& x : p) x *= 5.0f;  // away from the near-uniform regime of a fresh init
  for (const auto& info : model.layout().params()) {
    if (!info.is_matrix()) {
      for (std::size_t i = 0; i < info.numel; ++i) p[info.offset + i] = 1.0f + 0.2f * std::cos(float(i));
    }
  }
  model.set_params(p);
  auto tokens = btm::test::random_tokens(batch, seq, c.vocab_size, 77);
  tokens[seq] = -1;          // ignored target at the end of row 0
  tokens[3 * (seq + 1) - 1] = -1;  // and at the end of row 2 (a -1 may only be a target)

  model.zero_grads();
  const btm::LossSum probe = model.forward_backward(tokens.data(), batch, seq, 0.0f);
  model.zero_grads();
  const btm::LossSum sum = model.forward_backward(tokens.data(), batch, seq, 1.0f / float(probe.tokens));
  const double loss = sum.nll / double(sum.tokens);
  std::vector<float> grads(model.layout().total());
  backend->copy_to_host(grads.data(), model.grads(), grads.size() * sizeof(float));

  auto dir = btm::test::fresh_dir("reference");
  const auto model_file = dir / "model.h5", batch_file = dir / "batch.h5", out_file = dir / "out.h5";
  btm::save_model(model_file, btm::ModelFile{c, {"ref", "test", "", "", ""}, {}, p});
  {
    btm::h5::File f(batch_file, btm::h5::File::Mode::create);
    f.write<std::int32_t>("/tokens", tokens, {hsize_t(batch), hsize_t(seq + 1)});
  }
  const std::string cmd = "/usr/bin/python3 " + (btm::test::source_dir() / "tests/reference/llama_reference.py").string() +
                          " --model " + model_file.string() + " --batch " + batch_file.string() +
                          " --out " + out_file.string() + " > " + (dir / "log.txt").string() + " 2>&1";
  const int rc = std::system(cmd.c_str());
  ASSERT_EQ(rc, 0) << "the PyTorch reference failed (needs python3-torch and python3-h5py):\n"
                   << btm::test::read_text(dir / "log.txt");

  btm::h5::File out(out_file, btm::h5::File::Mode::read);
  const double ref_loss = out.read<double>("/loss")[0];
  EXPECT_NEAR(loss, ref_loss, 1e-5 * std::abs(ref_loss));
  for (const auto& info : model.layout().params()) {
    const auto ref = out.read<double>("/grads/" + info.name);
    ASSERT_EQ(ref.size(), info.numel) << info.name;
    std::vector<double> diff(info.numel);
    for (std::size_t i = 0; i < info.numel; ++i) diff[i] = grads[info.offset + i] - ref[i];
    EXPECT_LE(norm(diff), 1e-4 * norm(ref)) << info.name << ": |btm - torch| / |torch|";
    EXPECT_GT(norm(ref), 0.0) << info.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, PytorchReference,
                         testing::Values(Case{2, false}, Case{4, true}, Case{1, false}),
                         [](const auto& info) {
                           return "kv" + std::to_string(info.param.kv_heads) + (info.param.tied ? "_tied" : "_untied");
                         });

}  // namespace
