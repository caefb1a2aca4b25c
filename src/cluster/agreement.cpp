#include "btm/cluster/agreement.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "btm/error.hpp"

namespace btm::cluster {

namespace {

double entropy(const std::map<int, double>& counts, double n) {
  double h = 0;
  for (const auto& [label, c] : counts) {
    if (c > 0) h -= c / n * std::log(c / n);
  }
  return h;
}

}  // namespace

Agreement agreement(const std::vector<int>& clusters, const std::vector<int>& classes) {
  if (clusters.size() != classes.size()) fail_call("agreement: labelings of different lengths");
  Agreement a;
  if (clusters.empty()) return a;
  const double n = static_cast<double>(clusters.size());
  std::map<std::pair<int, int>, double> joint;
  std::map<int, double> pc, pd;
  for (std::size_t i = 0; i < clusters.size(); ++i) {
    joint[{clusters[i], classes[i]}] += 1;
    pc[clusters[i]] += 1;
    pd[classes[i]] += 1;
  }
  std::map<int, double> largest;
  double mi = 0;
  for (const auto& [key, c] : joint) {
    largest[key.first] = std::max(largest[key.first], c);
    mi += c / n * std::log(c * n / (pc[key.first] * pd[key.second]));
  }
  for (const auto& [cluster, c] : largest) a.purity += c;
  a.purity /= n;
  const double hc = entropy(pc, n), hd = entropy(pd, n);
  if (hc == 0 && hd == 0) {
    a.nmi = 1.0;
  } else {
    a.nmi = std::max(0.0, mi) / ((hc + hd) / 2);
  }
  return a;
}

}  // namespace btm::cluster
