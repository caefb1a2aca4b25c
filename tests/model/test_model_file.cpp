#include <gtest/gtest.h>

#include "btm/error.hpp"
#include "btm/h5.hpp"
#include "btm/model/model_file.hpp"
#include "support/test_paths.hpp"
#include "tiny_model.hpp"

namespace {

btm::ModelFile make_model() {
  btm::ModelFile m;
  m.config = btm::test::tiny_config();
  m.meta = {"expert-a", "experts", "seed", "scripture", "[run]\nname = \"t\"\n"};
  m.tokenizer = {"not-really-a-model", 37, 1, 2};
  auto layout = btm::ParamLayout::llama(m.config);
  m.params.resize(layout.total());
  for (std::size_t i = 0; i < m.params.size(); ++i) m.params[i] = 0.001f * float(i % 997);
  return m;
}

}  // namespace

TEST(ModelFile, RoundTripsConfigParamsMetaAndTokenizer) {
  auto dir = btm::test::fresh_dir("model_file");
  auto m = make_model();
  btm::save_model(dir / "m.h5", m);
  auto back = btm::load_model(dir / "m.h5");
  EXPECT_EQ(back.config.architecture_hash(), m.config.architecture_hash());
  EXPECT_EQ(back.params, m.params);
  EXPECT_EQ(back.meta.domain, "scripture");
  EXPECT_EQ(back.meta.parent, "seed");
  EXPECT_EQ(back.tokenizer.model, m.tokenizer.model);
  EXPECT_EQ(back.tokenizer.eos_id, 2);
  // Hugging Face names and [out, in] shapes, as h5py users will see them.
  btm::h5::File f(dir / "m.h5", btm::h5::File::Mode::read);
  EXPECT_EQ(f.shape("/params/model.layers.1.self_attn.k_proj.weight"), (std::vector<hsize_t>{8, 16}));
  EXPECT_EQ(f.shape("/params/model.layers.0.mlp.down_proj.weight"), (std::vector<hsize_t>{16, 24}));
  EXPECT_EQ(f.attr<std::int64_t>("/config", "num_key_value_heads"), 2);
}

TEST(ModelFile, WrongTensorShapeIsReportedWithItsName) {
  auto dir = btm::test::fresh_dir("model_file_bad");
  auto m = make_model();
  btm::save_model(dir / "m.h5", m);
  {
    btm::h5::File f(dir / "m.h5", btm::h5::File::Mode::read_write);
    f.write<float>("/params/model.norm.weight", std::vector<float>(15, 1.0f));
  }
  try {
    btm::load_model(dir / "m.h5");
    FAIL() << "expected an error";
  } catch (const btm::Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("model.norm.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("expected shape [16]"), std::string::npos) << msg;
  }
}

TEST(ModelFile, NotAModelFileIsRejected) {
  auto dir = btm::test::fresh_dir("model_file_none");
  { btm::h5::File f(dir / "x.h5", btm::h5::File::Mode::create); }
  EXPECT_THROW(btm::load_model(dir / "x.h5"), btm::Error);
  EXPECT_THROW(btm::load_model(dir / "missing.h5"), btm::Error);
}

TEST(ModelFile, MoeModelsRoundTripWithMixtralNamesAndConfigKeys) {
  auto dir = btm::test::fresh_dir("model_file_moe");
  auto m = make_model();
  m.config = btm::test::tiny_moe_config(3, 2, "switch");
  m.config.router_aux_loss_coef = 0.02;
  m.config.moe_aux_loss = "switch";
  m.config.moe_capacity_factor = 1.25;
  m.params.assign(btm::ParamLayout::llama(m.config).total(), 0.0f);
  for (std::size_t i = 0; i < m.params.size(); ++i) m.params[i] = 0.001f * float(i % 991);
  btm::save_model(dir / "moe.h5", m);
  auto back = btm::load_model(dir / "moe.h5");
  EXPECT_EQ(back.config.num_local_experts, 3);
  EXPECT_EQ(back.config.num_experts_per_tok, 2);
  EXPECT_EQ(back.config.router_aux_loss_coef, 0.02);
  EXPECT_EQ(back.config.moe_routing, "switch");
  EXPECT_EQ(back.config.moe_aux_loss, "switch");
  EXPECT_EQ(back.config.moe_capacity_factor, 1.25);
  EXPECT_EQ(back.config.architecture_hash(), m.config.architecture_hash());
  EXPECT_EQ(back.params, m.params);
  btm::h5::File f(dir / "moe.h5", btm::h5::File::Mode::read);
  EXPECT_EQ(f.shape("/params/model.layers.1.block_sparse_moe.gate.weight"), (std::vector<hsize_t>{3, 16}));
  EXPECT_EQ(f.shape("/params/model.layers.0.block_sparse_moe.experts.2.w1.weight"), (std::vector<hsize_t>{24, 16}));
  EXPECT_EQ(f.shape("/params/model.layers.0.block_sparse_moe.experts.2.w2.weight"), (std::vector<hsize_t>{16, 24}));
  EXPECT_FALSE(f.exists("/params/model.layers.0.mlp.up_proj.weight"));
  EXPECT_EQ(f.attr<std::int64_t>("/config", "num_local_experts"), 3);
  EXPECT_EQ(f.attr<std::int64_t>("/config", "num_experts_per_tok"), 2);
  EXPECT_EQ(f.string_attr("/config", "model_type"), "mixtral");
  // Dense files carry no MoE keys.
  btm::save_model(dir / "dense.h5", make_model());
  btm::h5::File g(dir / "dense.h5", btm::h5::File::Mode::read);
  EXPECT_FALSE(g.has_attr("/config", "num_local_experts"));
  EXPECT_EQ(g.string_attr("/config", "model_type"), "llama");
  EXPECT_EQ(btm::load_model(dir / "dense.h5").config.num_local_experts, 0);
}
