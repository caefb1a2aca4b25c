#pragma once
// Agreement of a clustering with reference labels (the corpus domains), as scikit-learn
// computes it: purity = (1/n) sum over clusters of the largest domain count; NMI = mutual
// information / arithmetic mean of the two entropies (normalized_mutual_info_score's
// default), 1 when both labelings are constant.
#include <vector>

namespace btm::cluster {

struct Agreement {
  double purity = 0;
  double nmi = 0;
};

// clusters[i] in 0..k-1, classes[i] in 0..m-1, same length.
Agreement agreement(const std::vector<int>& clusters, const std::vector<int>& classes);

}  // namespace btm::cluster
