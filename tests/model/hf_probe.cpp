// The btm side of tests/reference/check_hf.py (transformers against btm):
//   hf_probe models DIR              tiny dense (GQA, tied) and Mixtral (top-k, soft) model files in DIR
//   hf_probe logits MODEL.h5 OUT IDS  logits of every position of IDS (comma-separated),
//                                     float32 [n, vocab], through the KV-cache decoder
//   hf_probe encode MODEL.h5 TEXTS   the model's SentencePiece ids of each line of TEXTS
//                                     (a JSON array of strings), one JSON array per line
#include <fstream>
#include <iostream>
#include <sstream>

#include "btm/data/json.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/model/llama.hpp"
#include "btm/ops/backend.hpp"
#include "btm/runtime.hpp"
#include "hf_fixture.hpp"

namespace {

int models(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const btm::TokenizerBlob tok = btm::test::hf_fixture_tokenizer(BTM_TEST_DATA_DIR);
  btm::save_model(dir / "dense_gqa.h5", btm::test::hf_fixture_model(btm::test::hf_dense_gqa(), tok, 11));
  btm::save_model(dir / "dense_tied.h5", btm::test::hf_fixture_model(btm::test::hf_dense_tied(), tok, 12));
  btm::save_model(dir / "mixtral.h5", btm::test::hf_fixture_model(btm::test::hf_mixtral(), tok, 13));
  btm::ModelConfig soft = btm::test::hf_mixtral();
  soft.moe_routing = "soft";  // every expert, gates = softmax: Mixtral's top-E
  btm::save_model(dir / "mixtral_soft.h5", btm::test::hf_fixture_model(soft, tok, 14));
  return 0;
}

int logits(const std::string& model_file, const std::string& out, const std::string& ids_text) {
  std::vector<std::int32_t> ids;
  std::stringstream ss(ids_text);
  for (std::string item; std::getline(ss, item, ',');) ids.push_back(std::stoi(item));
  const btm::ModelFile file = btm::load_model(model_file);
  auto backend = btm::make_backend("cpu");
  btm::Llama model(file.config, *backend);
  model.set_params(file.params);
  std::ofstream o(out, std::ios::binary);
  for (std::int32_t id : ids) {
    const std::vector<float> l = model.decode(&id, 1);
    o.write(reinterpret_cast<const char*>(l.data()), static_cast<std::streamsize>(l.size() * sizeof(float)));
  }
  return o ? 0 : 1;
}

int encode(const std::string& model_file, const std::string& texts_file) {
  std::ifstream in(texts_file, std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const btm::Tokenizer tok(btm::load_model(model_file).tokenizer.model);
  for (const auto& t : btm::parse_json_array(text)) {
    std::string line = "[";
    for (auto id : tok.encode(t.text)) line += (line.size() > 1 ? "," : "") + std::to_string(id);
    std::cout << line << "]\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  btm::Runtime runtime(argc, argv);
  try {
    const std::vector<std::string> a(argv + 1, argv + argc);
    if (a.size() == 2 && a[0] == "models") return models(a[1]);
    if (a.size() == 4 && a[0] == "logits") return logits(a[1], a[2], a[3]);
    if (a.size() == 3 && a[0] == "encode") return encode(a[1], a[2]);
    std::cerr << "usage: hf_probe models DIR | logits MODEL.h5 OUT IDS | encode MODEL.h5 TEXTS.json\n";
    return 2;
  } catch (const std::exception& e) {
    btm::abort_all(e.what());
  }
}
