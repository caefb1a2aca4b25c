#pragma once
// C-BTM routing at inference (Gururangan et al. 2023, §2.3; ARCHITECTURE, Evaluation): the weight
// of cluster expert j for target t is computed from the distance between the tf-idf
// embedding of the prefix and the cluster centres,
//     w_j(x_<t) ∝ exp(-d_j^p / T) over the top_k nearest centres, 0 elsewhere, sum 1,
// with d_j the Euclidean distance between the L2-normalised embedding of the prefix and
// centre j, T the temperature and p = 2 (the paper's softmax(-d²/T)) or p = 4 (the released
// code, kernelmachine/cbtm metaseq/sequence_scorer_btm.py, squares the distances that
// kmeans.predict already returns squared). Ties among the centres go to the lower index.
//
// The prefix of a target is the text of its block's tokens before it, from the last EOS on:
// the decode (PrefixDecoder: exactly SentencePiece's decode) of the tokens since the start
// of the document it belongs to, or since the start of the block when the document began
// earlier. The released code decodes the whole window, where EOS decodes to nothing and
// glues the last word of one document to the first of the next; documents are what was
// clustered, so btm routes each on its own text.
//
// A prefix without any vocabulary term (the first target after an EOS, a prefix of
// punctuation or of one-letter words) has a zero embedding and no distance: it gets uniform
// weights over the top_k clusters with the most training documents (ties to the lower
// index). With top_k = k that is the uniform mixture.
//
// Incremental embedding: the embedding is y / ||y|| with y = Σ_v c_v idf_v P[:, v] over
// the prefix's terms v (btm/cluster/terms.hpp) with counts c_v (P: the SVD components
// [dims, V]); the tf-idf
// vectoriser's own L2 normalisation before the projection is a positive scale, undone by the
// final normalisation. The embedder keeps the counts and y; every token changes O(1) terms
// (a word completed or extended), each an O(dims) update. Terms never span a whitespace
// character, so the text up to the last whitespace is final; the word after it (the
// trailing partial word, which a from-scratch embedding of the prefix counts as the term it
// spells so far) is re-counted on every token: its old terms are taken out of y, its new
// terms put in. y is accumulated in double precision.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "btm/cluster/clustering.hpp"
#include "btm/data/tokenizer.hpp"
#include "btm/eval/prefix_decoder.hpp"

namespace btm {

// ---- weights from distances -------------------------------------------------------------

struct RouterSettings {
  int top_k = 1;             // clusters mixed per target, 1..k
  double temperature = 0.1;  // T > 0
  int distance_power = 2;    // 2: exp(-d²/T) (paper); 4: exp(-d⁴/T) (released code)
};

// Throws naming `where` (e.g. "eval.ensembles[2]") when top_k is not in 1..clusters, the
// temperature is not a positive finite number or the power is not 2 or 4.
void check_router_settings(const RouterSettings& s, int clusters, const std::string& where);

// The top_k clusters (ascending distance, ties to the lower index) and their weights.
// squared_distances: [k] (d², as Clustering::squared_distances gives them); index, weight: [top_k].
void routing_weights(const double* squared_distances, int k, const RouterSettings& s, std::int32_t* index,
                     double* weight);

// Uniform weights over the top_k clusters with the largest `sizes` (ties to the lower
// index), in that order. sizes: [k]; index, weight: [top_k].
void fallback_weights(const std::vector<double>& sizes, int top_k, std::int32_t* index, double* weight);

// ---- the prefix embedding -----------------------------------------------------------------

// The training documents per cluster (clusters.h5 /sizes), which rank the clusters for the
// fallback weights; throws naming the file.
std::vector<double> read_cluster_sizes(const std::filesystem::path& clusters_h5);

// The embedding of a growing text, updated incrementally (see above); equal to
// Clustering::embed of the whole text.
class PrefixEmbedder {
 public:
  explicit PrefixEmbedder(const cluster::Clustering& clustering);

  void reset();
  // The text is now stable + tail, where `stable` extends the previous call's stable text
  // (PrefixDecoder's contract) and `tail` replaces the previous tail.
  void update(const std::string& stable, const std::string& tail);
  // The L2-normalised embedding; false (and zeros) when the text has no vocabulary term.
  bool embedding(double* out /*[dims]*/) const;

 private:
  void count_terms(std::string_view text, int delta, std::vector<std::int32_t>* seen);
  void add(std::int32_t term, int delta);

  const cluster::Clustering& clustering_;
  std::vector<double> columns_;  // [V, dims]: idf_v * P[:, v], contiguous per term
  std::vector<int> counts_;      // [V]
  std::vector<double> y_;        // [dims]
  long long terms_ = 0;          // vocabulary terms counted (with multiplicity)
  std::size_t final_ = 0;        // stable text up to here (after a whitespace) is counted for good
  std::size_t seen_ = 0;         // stable text scanned so far
  std::vector<std::int32_t> tail_terms_;  // counted from the text after final_, retracted next update
};

// ---- one block ----------------------------------------------------------------------------

// The squared distances of the prefix of each of a block's targets, where it has terms.
struct BlockDistances {
  std::vector<double> squared;  // [T, k]
  std::vector<char> has_terms;  // [T]
};

// tokens: the block's context+1 tokens; target t = tokens[t+1], its prefix ends at tokens[t].
// Every prefix is embedded incrementally. eos: the id that ends a document.
BlockDistances block_distances(const std::int32_t* tokens, int context, int eos, const cluster::Clustering& clustering,
                               PrefixDecoder& decoder, PrefixEmbedder& embedder);

// Per target, the top_k clusters and weights: index, weight [T, top_k].
struct BlockRoute {
  std::vector<std::int32_t> index;
  std::vector<double> weight;
};
// sizes: [k] (read_cluster_sizes), for targets whose prefix has no term.
BlockRoute route_block(const BlockDistances& d, int k, const std::vector<double>& sizes, const RouterSettings& s);

// Clusters with a positive weight at some target, ascending.
std::vector<int> experts_of_route(const BlockRoute& r, int tokens, int top_k);

// The routed mixture's NLL over the block: -Σ_t log Σ_j w_j(t) p_j(x_t). logp(j) returns
// expert j's token log-probabilities [T] (only experts_of_route are asked for).
double routed_nll(const BlockRoute& r, int tokens, int top_k, const std::function<const float*(int)>& logp);

}  // namespace btm
