// Hugging Face interop: the safetensors writer and reader, export and import.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include "btm/data/json.hpp"
#include "btm/error.hpp"
#include "btm/model/hf.hpp"
#include "btm/model/safetensors.hpp"
#include "btm/train/checkpoint.hpp"
#include "hf_fixture.hpp"
#include "support/error_of.hpp"
#include "support/run_btm.hpp"
#include "support/test_paths.hpp"

namespace {

using btm::test::error_of;
namespace fs = std::filesystem;

const btm::TokenizerBlob& tokenizer() {
  static const btm::TokenizerBlob t = btm::test::hf_fixture_tokenizer(btm::test::test_data_dir());
  return t;
}

std::vector<float> values(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::ldexp(float((i * 2654435761u + seed) % 511) - 255.0f, -4);
  return v;  // multiples of 1/16 below 16: exact in bf16 and fp16
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A file of one tensor whose header is `json` (8-byte length prefix added) and `data` bytes.
void raw_safetensors(const fs::path& p, const std::string& json, std::size_t data_bytes) {
  std::string bytes(8, '\0');
  const std::uint64_t n = json.size();
  std::memcpy(bytes.data(), &n, 8);
  spit(p, bytes + json + std::string(data_bytes, '\0'));
}

}  // namespace

TEST(Safetensors, ConversionsRoundToNearestEvenAndKeepSpecials) {
  EXPECT_EQ(btm::float_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(btm::float_to_bf16(std::bit_cast<float>(0x3F808000u)), 0x3F80);  // tie -> even
  EXPECT_EQ(btm::float_to_bf16(std::bit_cast<float>(0x3F818000u)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(btm::float_to_bf16(std::bit_cast<float>(0x3F808001u)), 0x3F81);
  EXPECT_TRUE(std::isnan(btm::bf16_to_float(btm::float_to_bf16(std::nanf("")))));
  EXPECT_EQ(btm::float_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(btm::float_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(btm::float_to_f16(65520.0f), 0x7C00);  // rounds to inf
  EXPECT_EQ(btm::float_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(btm::float_to_f16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(btm::float_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // half of it: tie -> even (0)
  EXPECT_EQ(btm::float_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie -> even (2)
  EXPECT_EQ(btm::float_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
  EXPECT_EQ(btm::float_to_f16(1.0f + std::ldexp(3.0f, -11)), 0x3C02);
  // Every fp16 value converts to fp32 and back unchanged.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7C00) == 0x7C00 && (h & 0x3FF)) continue;  // NaNs
    ASSERT_EQ(btm::float_to_f16(btm::f16_to_float(std::uint16_t(h))), h) << h;
  }
}

TEST(Safetensors, RoundTripsEveryDtype) {
  auto dir = btm::test::fresh_dir("st_roundtrip");
  const auto a = values(12, 1), b = values(5, 2);
  for (auto dtype : {btm::TensorDtype::f32, btm::TensorDtype::bf16, btm::TensorDtype::f16}) {
    const fs::path p = dir / (std::string(btm::safetensors_dtype_name(dtype)) + ".safetensors");
    btm::write_safetensors(p, {{"z.weight", {3, 4}, a.data()}, {"a.bias", {5}, b.data()}}, dtype);
    btm::SafetensorsFile f(p);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    ASSERT_EQ(f.tensors().size(), 2u);
    const auto& z = f.tensors().at("z.weight");
    EXPECT_EQ(z.dtype, btm::safetensors_dtype_name(dtype));
    EXPECT_EQ(z.shape, (std::vector<std::int64_t>{3, 4}));
    // Sorted by name, packed from offset 0, data section 8-byte aligned.
    EXPECT_EQ(f.tensors().at("a.bias").begin, 0u);
    EXPECT_EQ(z.begin, 5 * btm::dtype_bytes(dtype));
    std::uint64_t header = 0;
    std::memcpy(&header, slurp(p).data(), 8);
    EXPECT_EQ(header % 8, 0u);
    EXPECT_EQ(fs::file_size(p), 8 + header + 17 * btm::dtype_bytes(dtype));
    std::vector<float> za(12), zb(5);
    f.read_f32("z.weight", za.data());
    f.read_f32("a.bias", zb.data());
    EXPECT_EQ(za, a);
    EXPECT_EQ(zb, b);
  }
  // bf16 rounds what it cannot hold; fp16 refuses what overflows it.
  const std::vector<float> odd = {1.0f + std::ldexp(1.0f, -10)};
  btm::write_safetensors(dir / "r.safetensors", {{"x", {1}, odd.data()}}, btm::TensorDtype::bf16);
  float back = 0;
  btm::SafetensorsFile(dir / "r.safetensors").read_f32("x", &back);
  EXPECT_EQ(back, 1.0f);
  const std::vector<float> big = {1e6f};
  const std::string msg = error_of([&] { btm::write_safetensors(dir / "o.safetensors", {{"big.weight", {1}, big.data()}}, btm::TensorDtype::f16); });
  EXPECT_NE(msg.find("big.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fp16"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir / "o.safetensors"));
}

TEST(Safetensors, ShardsAboveTheSizeWithAnIndex) {
  auto dir = btm::test::fresh_dir("st_shards");
  const auto v = values(100, 3);
  std::vector<btm::TensorToWrite> ts;
  for (int i = 0; i < 5; ++i) ts.push_back({"t" + std::to_string(i), {10, 10}, v.data()});
  const auto files = btm::write_safetensors_checkpoint(dir, ts, btm::TensorDtype::f32, 900);  // 2 tensors per shard
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[0], "model-00001-of-00003.safetensors");
  EXPECT_EQ(files[2], "model-00003-of-00003.safetensors");
  EXPECT_EQ(files[3], "model.safetensors.index.json");
  const auto index = btm::parse_json_object(slurp(dir / "model.safetensors.index.json"));
  const auto map = btm::parse_json_object(index.at("weight_map").text);
  EXPECT_EQ(map.at("t4").text, "model-00003-of-00003.safetensors");
  EXPECT_EQ(btm::parse_json_object(index.at("metadata").text).at("total_size").text, "2000");
  btm::SafetensorsCheckpoint ck(dir);
  EXPECT_EQ(ck.names().size(), 5u);
  EXPECT_EQ(ck.file_of("t2").filename(), "model-00002-of-00003.safetensors");
  std::vector<float> out(100);
  ck.read_f32("t3", out.data());
  EXPECT_EQ(out, v);
  // Written again unsharded: the old shards and index go, one file remains.
  EXPECT_EQ(btm::write_safetensors_checkpoint(dir, ts, btm::TensorDtype::bf16, 1u << 30).size(), 1u);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir / "model-00001-of-00003.safetensors"));
  EXPECT_EQ(btm::SafetensorsCheckpoint(dir).entry("t0").dtype, "BF16");
}

TEST(Safetensors, CorruptFilesAreNamedWithTheTensor) {
  auto dir = btm::test::fresh_dir("st_bad");
  const auto v = values(4, 1);
  const fs::path good = dir / "good.safetensors";
  btm::write_safetensors(good, {{"w", {4}, v.data()}}, btm::TensorDtype::f32);
  const std::string bytes = slurp(good);
  auto err = [&](const fs::path& p) { return error_of([&] { btm::SafetensorsFile f(p); }); };

  spit(dir / "short.safetensors", bytes.substr(0, 5));
  EXPECT_NE(err(dir / "short.safetensors").find("truncated"), std::string::npos);
  spit(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 4));  // data cut off
  std::string msg = err(dir / "cut.safetensors");
  EXPECT_NE(msg.find("tensor w"), std::string::npos) << msg;
  EXPECT_NE(msg.find("overrun"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cut.safetensors"), std::string::npos) << msg;
  std::string huge = bytes;
  const std::uint64_t n = 1u << 20;
  std::memcpy(huge.data(), &n, 8);
  spit(dir / "len.safetensors", huge);
  EXPECT_NE(err(dir / "len.safetensors").find("header length"), std::string::npos);

  raw_safetensors(dir / "json.safetensors", "{\"w\": {\"dtype\": \"F32\",", 0);
  EXPECT_NE(err(dir / "json.safetensors").find("not a JSON object"), std::string::npos);
  raw_safetensors(dir / "dtype.safetensors", R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,2]}})", 2);
  msg = err(dir / "dtype.safetensors");
  EXPECT_NE(msg.find("tensor w: unknown dtype \"Q4\""), std::string::npos) << msg;
  raw_safetensors(dir / "size.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  msg = err(dir / "size.safetensors");
  EXPECT_NE(msg.find("needs 12 bytes"), std::string::npos) << msg;
  raw_safetensors(dir / "noshape.safetensors", R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", 8);
  EXPECT_NE(err(dir / "noshape.safetensors").find("missing \"shape\""), std::string::npos);
  raw_safetensors(dir / "neg.safetensors", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8);
  EXPECT_NE(err(dir / "neg.safetensors").find("non-negative integer"), std::string::npos);
  // A readable header with a dtype btm does not convert: refused when read.
  raw_safetensors(dir / "i64.safetensors", R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8);
  float out = 0;
  msg = error_of([&] { btm::SafetensorsFile(dir / "i64.safetensors").read_f32("w", &out); });
  EXPECT_NE(msg.find("dtype I64"), std::string::npos) << msg;

  // An index naming a shard that is not there.
  auto ck = btm::test::fresh_dir("st_bad_index");
  spit(ck / "model.safetensors.index.json", R"({"metadata":{},"weight_map":{"w":"model-00001-of-00002.safetensors"}})");
  msg = error_of([&] { btm::SafetensorsCheckpoint c(ck); });
  EXPECT_NE(msg.find("model-00001-of-00002.safetensors, which does not exist"), std::string::npos) << msg;
  auto empty = btm::test::fresh_dir("st_empty");
  EXPECT_NE(error_of([&] { btm::SafetensorsCheckpoint c(empty); }).find("no model.safetensors"), std::string::npos);
}

namespace {

void expect_round_trip(const btm::ModelConfig& config, const std::string& name, const std::string& shard = "") {
  auto dir = btm::test::fresh_dir("hf_" + name);
  const btm::ModelFile m = btm::test::hf_fixture_model(config, tokenizer(), 7);
  btm::save_model(dir / "m.h5", m);
  btm::HfExportOptions options;
  if (!shard.empty()) options.shard_bytes = btm::parse_byte_size(shard);
  const auto files = btm::export_hf(dir / "m.h5", dir / "hf", options);
  if (!shard.empty()) EXPECT_TRUE(fs::exists(dir / "hf" / "model.safetensors.index.json"));
  const btm::ModelFile back = btm::import_hf(dir / "hf", {config.max_position_embeddings});
  EXPECT_EQ(back.params, m.params);  // bitwise
  EXPECT_EQ(back.config.architecture_hash(), m.config.architecture_hash());
  EXPECT_EQ(back.config.architecture_differences(m.config), "");
  EXPECT_EQ(back.config.max_position_embeddings, m.config.max_position_embeddings);
  EXPECT_EQ(back.config.initializer_range, m.config.initializer_range);
  EXPECT_EQ(back.config.router_aux_loss_coef, m.config.router_aux_loss_coef);
  EXPECT_EQ(back.config.moe_aux_loss, m.config.moe_aux_loss);
  EXPECT_EQ(back.config.moe_capacity_factor, m.config.moe_capacity_factor);
  EXPECT_EQ(back.tokenizer.model, m.tokenizer.model);
  EXPECT_EQ(back.tokenizer.eos_id, m.tokenizer.eos_id);
  EXPECT_EQ(back.meta.phase, "import");
  // Saved, it is a finished model file like a seed.
  btm::save_model(dir / "back.h5", back);
  EXPECT_TRUE(btm::model_is_complete(dir / "back.h5"));
  EXPECT_EQ(btm::load_model(dir / "back.h5").params, m.params);
}

std::map<std::string, btm::JsonValue> config_json(const fs::path& dir) { return btm::parse_json_object(slurp(dir / "config.json")); }

}  // namespace

TEST(HfExport, ImportOfExportIsBitwiseTheModel) {
  expect_round_trip(btm::test::hf_dense_gqa(), "dense");
  expect_round_trip(btm::test::hf_dense_tied(), "tied");
  expect_round_trip(btm::test::hf_mixtral(), "moe", "20KB");
  btm::ModelConfig soft = btm::test::hf_mixtral();
  soft.moe_routing = "soft";
  soft.num_experts_per_tok = 1;
  soft.moe_aux_loss = "switch";
  expect_round_trip(soft, "soft");
}

TEST(HfExport, ConfigJsonHasTheTransformersKeys) {
  auto dir = btm::test::fresh_dir("hf_config");
  btm::save_model(dir / "d.h5", btm::test::hf_fixture_model(btm::test::hf_dense_tied(), tokenizer(), 1));
  btm::save_model(dir / "m.h5", btm::test::hf_fixture_model(btm::test::hf_mixtral(), tokenizer(), 1));
  btm::export_hf(dir / "d.h5", dir / "d", {btm::TensorDtype::bf16, 5'000'000'000});
  btm::export_hf(dir / "m.h5", dir / "m", {});
  auto d = config_json(dir / "d");
  EXPECT_EQ(d.at("architectures").text, "[\"LlamaForCausalLM\"]");
  EXPECT_EQ(d.at("model_type").text, "llama");
  EXPECT_EQ(d.at("tie_word_embeddings").text, "true");
  EXPECT_EQ(d.at("num_key_value_heads").text, "4");
  EXPECT_EQ(d.at("hidden_act").text, "silu");
  EXPECT_EQ(d.at("attention_bias").text, "false");
  EXPECT_EQ(d.at("torch_dtype").text, "bfloat16");
  EXPECT_EQ(d.at("rms_norm_eps").text, "1e-05");
  EXPECT_EQ(d.at("eos_token_id").text, "2");
  EXPECT_EQ(d.count("num_local_experts"), 0u);
  // Tied: no lm_head tensor, as transformers expects.
  btm::SafetensorsCheckpoint tied(dir / "d");
  EXPECT_FALSE(tied.contains("lm_head.weight"));
  EXPECT_EQ(tied.entry("model.embed_tokens.weight").dtype, "BF16");
  auto m = config_json(dir / "m");
  EXPECT_EQ(m.at("architectures").text, "[\"MixtralForCausalLM\"]");
  EXPECT_EQ(m.at("num_local_experts").text, "4");
  EXPECT_EQ(m.at("num_experts_per_tok").text, "2");
  EXPECT_EQ(m.at("output_router_logits").text, "false");
  btm::SafetensorsCheckpoint moe(dir / "m");
  EXPECT_TRUE(moe.contains("model.layers.1.block_sparse_moe.gate.weight"));
  EXPECT_EQ(moe.entry("model.layers.1.block_sparse_moe.experts.3.w2.weight").shape, (std::vector<std::int64_t>{32, 48}));
  EXPECT_TRUE(moe.contains("lm_head.weight"));
  for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    EXPECT_TRUE(fs::exists(dir / "m" / f)) << f;
  }
  EXPECT_EQ(slurp(dir / "m" / "tokenizer.model"), tokenizer().model);
}

TEST(HfExport, RefusesUnfinishedCheckpointsAndRoutingMixtralCannotExpress) {
  auto dir = btm::test::fresh_dir("hf_refuse");
  btm::Checkpoint ck;
  ck.model = btm::test::hf_fixture_model(btm::test::hf_dense_gqa(), tokenizer(), 1);
  ck.state.step = 3;
  ck.state.total_steps = 10;
  btm::save_checkpoint(dir / "ck.h5", ck);
  std::string msg = error_of([&] { btm::export_hf(dir / "ck.h5", dir / "out", {}); });
  EXPECT_NE(msg.find("unfinished training checkpoint (step 3 of 10)"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir / "out"));
  for (const char* routing : {"switch", "sample_top1"}) {
    btm::ModelConfig c = btm::test::hf_mixtral();
    c.moe_routing = routing;
    c.num_experts_per_tok = 1;
    btm::save_model(dir / "r.h5", btm::test::hf_fixture_model(c, tokenizer(), 1));
    msg = error_of([&] { btm::export_hf(dir / "r.h5", dir / "out", {}); });
    EXPECT_NE(msg.find("moe_routing = \"" + std::string(routing) + "\" cannot be exported as MixtralForCausalLM"), std::string::npos) << msg;
  }
  EXPECT_NE(error_of([&] { btm::export_hf(dir / "missing.h5", dir / "out", {}); }).find("not found"), std::string::npos);
  EXPECT_NE(error_of([] { btm::parse_byte_size("5 parsecs"); }).find("5 parsecs"), std::string::npos);
  EXPECT_EQ(btm::parse_byte_size("2GiB"), 2147483648u);
  EXPECT_EQ(btm::parse_byte_size("500MB"), 500000000u);
}

namespace {

// An exported dense model whose folder a test then damages.
fs::path exported(const std::string& name, const btm::ModelConfig& c = btm::test::hf_dense_gqa()) {
  auto dir = btm::test::fresh_dir("hf_imp_" + name);
  btm::save_model(dir / "m.h5", btm::test::hf_fixture_model(c, tokenizer(), 3));
  btm::export_hf(dir / "m.h5", dir / "hf", {});
  return dir / "hf";
}

void edit_config(const fs::path& dir, const std::string& from, const std::string& to) {
  std::string text = slurp(dir / "config.json");
  const auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << from;
  text.replace(at, from.size(), to);
  spit(dir / "config.json", text);
}

std::string import_error(const fs::path& dir) { return error_of([&] { btm::import_hf(dir, {}); }); }

}  // namespace

TEST(HfImport, BadCheckpointsAreRefusedNamingFileAndTensor) {
  auto dir = exported("tok");
  fs::remove(dir / "tokenizer.model");
  std::string msg = import_error(dir);
  EXPECT_NE(msg.find("tokenizer.model: not found; btm needs the SentencePiece"), std::string::npos) << msg;

  dir = exported("noconfig");
  fs::remove(dir / "config.json");
  EXPECT_NE(import_error(dir).find("config.json: not found"), std::string::npos);

  dir = exported("shape");
  edit_config(dir, "\"intermediate_size\": 48", "\"intermediate_size\": 64");
  msg = import_error(dir);
  EXPECT_NE(msg.find("model.safetensors: tensor model.layers.0.mlp.gate_proj.weight has shape [48, 32], config.json implies [64, 32]"),
            std::string::npos) << msg;

  dir = exported("rope");
  edit_config(dir, "\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}");
  EXPECT_NE(import_error(dir).find("rope_scaling: rope_type \"linear\" is not supported"), std::string::npos);
  dir = exported("bias");
  edit_config(dir, "\"attention_bias\": false", "\"attention_bias\": true");
  EXPECT_NE(import_error(dir).find("attention_bias: true is not supported"), std::string::npos);
  dir = exported("type");
  edit_config(dir, "\"model_type\": \"llama\"", "\"model_type\": \"gpt2\"");
  EXPECT_NE(import_error(dir).find("\"gpt2\" is not supported"), std::string::npos);
  dir = exported("vocab");
  edit_config(dir, "\"vocab_size\": 512", "\"vocab_size\": \"512\"");
  msg = import_error(dir);
  EXPECT_NE(msg.find("config.json: vocab_size: expected an integer, found a string"), std::string::npos) << msg;

  // A checkpoint with an extra bias, and one missing a tensor.
  dir = exported("extra");
  {
    btm::SafetensorsCheckpoint ck(dir);
    std::vector<std::vector<float>> data;
    std::vector<btm::TensorToWrite> ts;
    for (const auto& n : ck.names()) {
      data.emplace_back(ck.entry(n).numel());
      ck.read_f32(n, data.back().data());
    }
    std::size_t i = 0;
    for (const auto& n : ck.names()) ts.push_back({n, ck.entry(n).shape, data[i++].data()});
    const std::vector<float> bias(32, 0.0f);
    ts.push_back({"model.layers.0.self_attn.q_proj.bias", {32}, bias.data()});
    btm::write_safetensors(dir / "model.safetensors", ts, btm::TensorDtype::f32);
    msg = import_error(dir);
    EXPECT_NE(msg.find("tensor model.layers.0.self_attn.q_proj.bias is not a parameter"), std::string::npos) << msg;
    ts.pop_back();
    ts.erase(std::find_if(ts.begin(), ts.end(), [](const auto& t) { return t.name == "model.norm.weight"; }));
    btm::write_safetensors(dir / "model.safetensors", ts, btm::TensorDtype::f32);
    msg = import_error(dir);
    EXPECT_NE(msg.find("tensor model.norm.weight [32] is missing"), std::string::npos) << msg;
  }
  // Truncated weights: the error names the file and the tensor.
  dir = exported("trunc");
  const std::string st = slurp(dir / "model.safetensors");
  spit(dir / "model.safetensors", st.substr(0, st.size() - 100));
  msg = import_error(dir);
  EXPECT_NE(msg.find("model.safetensors: tensor model.norm.weight: data_offsets"), std::string::npos) << msg;
}

TEST(HfImport, ReadsHalfPrecisionAndSetsTheContext) {
  auto dir = btm::test::fresh_dir("hf_half");
  const btm::ModelFile m = btm::test::hf_fixture_model(btm::test::hf_mixtral(), tokenizer(), 5);
  btm::save_model(dir / "m.h5", m);
  btm::export_hf(dir / "m.h5", dir / "hf", {btm::TensorDtype::bf16, 5'000'000'000});
  const btm::ModelFile back = btm::import_hf(dir / "hf", {128});
  EXPECT_EQ(back.config.max_position_embeddings, 128);
  ASSERT_EQ(back.params.size(), m.params.size());
  for (std::size_t i = 0; i < m.params.size(); ++i) {
    ASSERT_EQ(back.params[i], btm::bf16_to_float(btm::float_to_bf16(m.params[i]))) << i;
  }
}

TEST(HfImport, ReadsTransformers5RopeParameters) {
  auto dir = exported("rope5");
  edit_config(dir, "\"rope_theta\": 500.0", "\"rope_parameters\": {\"rope_theta\": 123.0, \"rope_type\": \"default\"}");
  EXPECT_EQ(btm::import_hf(dir, {}).config.rope_theta, 123.0);
  edit_config(dir, "\"rope_type\": \"default\"", "\"rope_type\": \"yarn\"");
  const std::string msg = import_error(dir);
  EXPECT_NE(msg.find("config.json: rope_parameters: rope_type \"yarn\" is not supported"), std::string::npos) << msg;
}

TEST(HfCli, ExportAndImportCommandsRoundTripAndReportErrors) {
  auto dir = btm::test::fresh_dir("hf_cli");
  const btm::ModelFile m = btm::test::hf_fixture_model(btm::test::hf_mixtral(), tokenizer(), 9);
  btm::save_model(dir / "m.h5", m);
  const std::string q = "'" + dir.string() + "/";
  auto r = btm::test::run_btm("export " + q + "m.h5' " + q + "hf' --dtype fp16 --shard-size 30KB", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("export: model="), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir / "hf" / "model.safetensors.index.json"));
  EXPECT_EQ(btm::SafetensorsCheckpoint(dir / "hf").entry("model.norm.weight").dtype, "F16");
  r = btm::test::run_btm("import " + q + "hf' " + q + "back.h5' --context 16", dir);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("num_local_experts = 4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[seed]\ninit = \"" + dir.string() + "/back.h5\"\ntokens = 0"), std::string::npos) << r.out;
  const btm::ModelFile back = btm::load_model(dir / "back.h5");
  EXPECT_EQ(back.config.max_position_embeddings, 16);
  for (std::size_t i = 0; i < m.params.size(); ++i) {
    ASSERT_EQ(back.params[i], btm::f16_to_float(btm::float_to_f16(m.params[i]))) << i;
  }
  fs::remove(dir / "hf" / "tokenizer.model");
  r = btm::test::run_btm("import " + q + "hf' " + q + "none.h5'", dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("tokenizer.model: not found"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "none.h5"));
  r = btm::test::run_btm("export " + q + "m.h5'", dir);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("usage: btm export MODEL.h5 DIR"), std::string::npos) << r.err;
  r = btm::test::run_btm("import " + q + "hf' " + q + "x.h5' --context 1", dir);
  EXPECT_NE(r.err.find("--context expects an integer >= 2"), std::string::npos) << r.err;
}
