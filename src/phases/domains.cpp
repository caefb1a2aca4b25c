#include <algorithm>

#include "btm/data/dataset.hpp"
#include "btm/phases.hpp"

namespace btm {

std::vector<std::string> train_domains_of(const Deck& deck, const Dataset& data) {
  if (deck.clustering()) return deck.cluster_domains();  // clustered.h5's training domains
  if (!deck.data.train_domains.empty()) return deck.data.train_domains;
  std::vector<std::string> out;
  for (const auto& d : data.domains()) {
    const auto& held = deck.data.heldout_domains;
    if (std::find(held.begin(), held.end(), d) == held.end()) out.push_back(d);
  }
  return out;
}

std::vector<std::string> expert_names_of(const Deck& deck, const Dataset& data) {
  return deck.experts.domains.empty() ? train_domains_of(deck, data) : deck.experts.domains;
}

std::vector<std::string> eval_domains_of(const Deck& deck, const Dataset& data) {
  std::vector<std::string> out = train_domains_of(deck, data);
  for (const auto& d : deck.data.heldout_domains) out.push_back(d);
  return out;
}

}  // namespace btm
