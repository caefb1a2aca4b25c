// C-BTM routing: incremental SentencePiece decoding, routing weights, the incremental
// prefix embedding and the routed mixture, each against a from-scratch computation.
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "btm/cluster/clustering.hpp"
#include "btm/cluster/terms.hpp"
#include "btm/data/corpus.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/error.hpp"
#include "btm/eval/ensemble.hpp"
#include "btm/eval/prefix_decoder.hpp"
#include "btm/eval/routing.hpp"
#include "support/test_paths.hpp"

namespace {

using btm::RouterSettings;

// Every document of the split_jsonl fixture (code, dictionary text with accents, scripture).
std::vector<std::string> fixture_texts() {
  std::vector<std::string> texts;
  auto corpus = btm::test::test_data_dir() / "fixtures" / "split_jsonl";
  btm::for_each_document(corpus, btm::CorpusFormat::split_jsonl, [&](btm::RawDocument& d) { texts.push_back(d.text); });
  return texts;
}

// Text the fixture's tokenizer has few pieces for: accents, CJK, emoji fall back to bytes.
const std::string kUnicode = "naïve café — 東京 ist schön 😀 déjà vu\tend";

const btm::Tokenizer& tokenizer() {
  static const btm::Tokenizer tok = [] {
    std::vector<std::string> lines;
    for (const auto& t : fixture_texts()) {
      std::size_t pos = 0;
      while (pos < t.size()) {
        auto end = t.find('\n', pos);
        if (end == std::string::npos) end = t.size();
        if (end > pos) lines.push_back(t.substr(pos, end - pos));
        pos = end + 1;
      }
    }
    std::vector<std::string_view> views(lines.begin(), lines.end());
    return btm::Tokenizer(btm::Tokenizer::train(views, 512));
  }();
  return tok;
}

void expect_decodes_every_prefix(const std::vector<std::int32_t>& ids) {
  const auto& tok = tokenizer();
  btm::PrefixDecoder dec(tok);
  std::vector<std::int32_t> prefix;
  std::string last_stable;
  for (std::int32_t id : ids) {
    dec.push(id);
    prefix.push_back(id);
    ASSERT_EQ(dec.text(), tok.decode(prefix)) << "after " << prefix.size() << " ids";
    ASSERT_EQ(dec.stable().compare(0, last_stable.size(), last_stable), 0) << "stable text changed";
    last_stable = dec.stable();
  }
}

// ---- decoding ----------------------------------------------------------------------------

TEST(PrefixDecoder, EveryPrefixOfRealTextDecodesAsSentencePieceDoes) {
  const auto& tok = tokenizer();
  int bytes = 0;
  for (const auto& text : fixture_texts()) {
    const auto ids = tok.encode(text.substr(0, 1500));
    for (auto id : ids) bytes += tok.is_byte(id);
    expect_decodes_every_prefix(ids);
  }
  const auto ids = tok.encode(kUnicode);
  for (auto id : ids) bytes += tok.is_byte(id);
  expect_decodes_every_prefix(ids);
  EXPECT_GT(bytes, 20) << "the texts must exercise byte-fallback pieces";
}

TEST(PrefixDecoder, InvalidAndInterruptedByteRunsDecodeAsSentencePieceDoes) {
  const auto& tok = tokenizer();
  std::vector<std::int32_t> byte_ids, other;
  for (int id = 0; id < tok.vocab_size(); ++id) (tok.is_byte(id) ? byte_ids : other).push_back(id);
  ASSERT_EQ(byte_ids.size(), 256u);
  // Random mixtures of bytes (overlong forms, surrogates, stray continuation bytes,
  // truncated characters), control pieces (EOS) and normal pieces.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<std::int32_t> ids;
    const int n = 1 + static_cast<int>(rng() % 24);
    for (int i = 0; i < n; ++i) {
      const unsigned r = rng() % 10;
      if (r < 6) {
        // Mostly bytes that start or continue multi-byte characters.
        const int b = (r < 2) ? 0x80 + int(rng() % 64) : (r < 4) ? 0xC0 + int(rng() % 64) : int(rng() % 256);
        ids.push_back(byte_ids[b]);
      } else if (r < 7) {
        ids.push_back(btm::kEosId);
      } else {
        ids.push_back(other[rng() % other.size()]);
      }
    }
    expect_decodes_every_prefix(ids);
  }
  // Complete characters of every length, byte by byte.
  std::vector<std::int32_t> ids;
  for (unsigned char c : std::string("a\xC3\xA9\xE6\x9D\xB1\xF0\x9F\x98\x80\xED\xA0\x80\xC0\xAF")) ids.push_back(byte_ids[c]);
  expect_decodes_every_prefix(ids);
  EXPECT_THROW(btm::PrefixDecoder(tok).push(tok.vocab_size()), btm::Error);
}

// ---- weights -----------------------------------------------------------------------------

// Brute force: softmax over all clusters of -d^p/T, keep the top_k largest (ties to the
// lower index), renormalise.
std::vector<double> brute_weights(const std::vector<double>& d, const RouterSettings& s) {
  const int k = static_cast<int>(d.size());
  std::vector<double> p(k);
  double z = 0;
  for (int j = 0; j < k; ++j) z += p[j] = std::exp(-std::pow(d[j], s.distance_power) / s.temperature);
  for (auto& x : p) x /= z;
  std::vector<double> out(k, 0.0);
  std::vector<bool> taken(k, false);
  double kept = 0;
  for (int r = 0; r < s.top_k; ++r) {
    int best = -1;
    for (int j = 0; j < k; ++j) {
      if (!taken[j] && (best < 0 || d[j] < d[best])) best = j;
    }
    taken[best] = true;
    out[best] = p[best];
    kept += p[best];
  }
  for (auto& x : out) x /= kept;
  return out;
}

TEST(RoutingWeights, MatchBruteForceForBothPowersTopKAndTemperatures) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> dist(0.2, 1.6);
  for (int power : {2, 4}) {
    for (double T : {0.05, 0.1, 1.0, 10.0}) {
      for (int k : {1, 3, 8}) {
        for (int top_k = 1; top_k <= k; ++top_k) {
          std::vector<double> d(k);
          for (auto& x : d) x = dist(rng);
          if (k > 2) d[2] = d[0];  // a tie: the lower index wins
          const RouterSettings s{top_k, T, power};
          std::vector<std::int32_t> idx(top_k);
          std::vector<double> w(top_k), sq(k);
          for (int j = 0; j < k; ++j) sq[j] = d[j] * d[j];
          btm::routing_weights(sq.data(), k, s, idx.data(), w.data());
          std::vector<double> dense(k, 0.0);
          for (int r = 0; r < top_k; ++r) dense[idx[r]] += w[r];
          const auto expect = brute_weights(d, s);
          for (int j = 0; j < k; ++j) EXPECT_NEAR(dense[j], expect[j], 1e-12) << "p=" << power << " T=" << T << " k=" << k;
          if (k > 2 && top_k == 1 && d[0] <= *std::min_element(d.begin(), d.end())) EXPECT_EQ(idx[0], 0);
        }
      }
    }
  }
}

TEST(RoutingWeights, FourthPowerIsSharperThanSquareAndSettingsAreChecked) {
  const std::vector<double> d = {0.25, 0.81};  // squared distances 0.5², 0.9²
  std::int32_t i2[2], i4[2];
  double w2[2], w4[2];
  btm::routing_weights(d.data(), 2, {2, 0.1, 2}, i2, w2);
  btm::routing_weights(d.data(), 2, {2, 0.1, 4}, i4, w4);
  EXPECT_NEAR(w2[1] / w2[0], std::exp(-(0.81 - 0.25) / 0.1), 1e-12);
  EXPECT_NEAR(w4[1] / w4[0], std::exp(-(0.81 * 0.81 - 0.0625) / 0.1), 1e-12);
  EXPECT_THROW(btm::check_router_settings({3, 0.1, 2}, 2, "eval.ensembles[1]"), btm::Error);
  EXPECT_THROW(btm::check_router_settings({1, 0.0, 2}, 2, "eval.ensembles[1]"), btm::Error);
  EXPECT_THROW(btm::check_router_settings({1, -1.0, 2}, 2, "eval.ensembles[1]"), btm::Error);
  EXPECT_THROW(btm::check_router_settings({1, 0.1, 3}, 2, "eval.ensembles[1]"), btm::Error);
  try {
    btm::check_router_settings({5, 0.1, 2}, 4, "eval.ensembles[2]");
    FAIL();
  } catch (const btm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval.ensembles[2].top_k = 5"), std::string::npos) << e.what();
  }
}

TEST(RoutingWeights, FallbackIsUniformOverTheLargestClusters) {
  std::int32_t idx[2];
  double w[2];
  btm::fallback_weights({10, 30, 30, 5}, 2, idx, w);
  EXPECT_EQ(idx[0], 1);
  EXPECT_EQ(idx[1], 2);
  EXPECT_DOUBLE_EQ(w[0], 0.5);
  EXPECT_DOUBLE_EQ(w[1], 0.5);
}


// ---- the prefix embedding ----------------------------------------------------------------

// A clustering in the shape the cluster phase fits: the fixture's terms as the vocabulary
// (every third left out), random idf, SVD components and unit-norm centroids.
btm::cluster::Clustering word_clustering(int dims, int k) {
  std::set<std::string> words;
  for (const auto& t : fixture_texts()) {
    for (const auto& w : btm::cluster::terms(t + " " + kUnicode)) words.insert(w);
  }
  btm::cluster::Clustering c;
  c.k = k;
  c.dims = dims;
  int i = 0;
  for (const auto& w : words) {
    if (i++ % 3 != 0) c.vocabulary.push_back(w);
  }
  const std::size_t V = c.vocabulary.size();
  for (std::size_t j = 0; j < V; ++j) c.index.emplace(c.vocabulary[j], static_cast<std::int32_t>(j));
  std::mt19937 rng(11);
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uni(1.0, 6.0);
  for (std::size_t v = 0; v < V; ++v) c.idf.push_back(uni(rng));
  for (std::size_t x = 0; x < dims * V; ++x) c.components.push_back(normal(rng));
  c.term_vectors.resize(V * dims);
  for (int d = 0; d < dims; ++d) {
    for (std::size_t v = 0; v < V; ++v) c.term_vectors[v * dims + d] = c.components[d * V + v];
  }
  for (int j = 0; j < k; ++j) {
    double norm = 0;
    std::vector<double> x(dims);
    for (auto& v : x) norm += (v = normal(rng)) * v;
    for (auto& v : x) c.centroids.push_back(v / std::sqrt(norm));
  }
  return c;
}

TEST(PrefixEmbedder, IncrementalEmbeddingOfEveryDecodedPrefixMatchesFromScratch) {
  const auto& tok = tokenizer();
  const auto clustering = word_clustering(16, 4);
  btm::PrefixDecoder dec(tok);
  btm::PrefixEmbedder emb(clustering);
  std::vector<double> inc(clustering.dims);
  int positions = 0, with_terms = 0;
  for (auto text : fixture_texts()) {
    const auto ids = tok.encode(text.substr(0, 700) + " " + kUnicode);
    dec.reset();
    emb.reset();
    std::vector<std::int32_t> prefix;
    for (auto id : ids) {
      dec.push(id);
      prefix.push_back(id);
      emb.update(dec.stable(), dec.tail());
      const bool has = emb.embedding(inc.data());
      const std::string text = tok.decode(prefix);
      ASSERT_EQ(has, !clustering.tfidf(text).empty()) << "prefix " << prefix.size();
      const auto ref = clustering.embed(text);
      for (int d = 0; d < clustering.dims; ++d) ASSERT_NEAR(inc[d], ref[d], 1e-5) << "prefix " << prefix.size();
      ++positions;
      with_terms += has;
    }
  }
  EXPECT_GT(with_terms, positions / 2);
  EXPECT_LT(with_terms, positions);  // the first tokens of a document have no term yet
}

TEST(PrefixEmbedder, BlockDistancesRestartAtEveryEndOfDocument) {
  const auto& tok = tokenizer();
  const auto clustering = word_clustering(8, 3);
  btm::PrefixDecoder dec(tok);
  btm::PrefixEmbedder emb(clustering);
  const auto a = tok.encode("In the beginning God created the heaven and the earth.");
  const auto b = tok.encode("func main() { fmt.Println(value) }");
  std::vector<std::int32_t> block = a;
  block.push_back(btm::kEosId);
  block.insert(block.end(), b.begin(), b.end());
  const int T = static_cast<int>(block.size()) - 1;
  const auto d = btm::block_distances(block.data(), T, btm::kEosId, clustering, dec, emb);
  int restarts = 0;
  for (int t = 0; t < T; ++t) {
    // The prefix of target t: tokens since the last EOS at or before t, up to t.
    std::vector<std::int32_t> prefix;
    for (int s = 0; s <= t; ++s) {
      if (block[s] == btm::kEosId) prefix.clear();
      else prefix.push_back(block[s]);
    }
    restarts += block[t] == btm::kEosId;
    const std::string text = tok.decode(prefix);
    const bool has = !clustering.tfidf(text).empty();
    ASSERT_EQ(bool(d.has_terms[t]), has) << "target " << t;
    if (!has) continue;
    const auto ref = clustering.squared_distances(clustering.embed(text));
    for (int j = 0; j < clustering.k; ++j) EXPECT_NEAR(d.squared[std::size_t(t) * clustering.k + j], ref[j], 1e-9);
  }
  EXPECT_EQ(restarts, 1);
  EXPECT_FALSE(d.has_terms[a.size()]) << "the target after EOS starts a new, empty prefix";
}

}  // namespace
