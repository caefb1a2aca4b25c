#pragma once
// Expert groups (ARCHITECTURE, Process layout): P world ranks, E experts, G = min(P, E) groups.
// Group g owns world ranks [g*P/G, (g+1)*P/G) and trains experts e with e % G == g, one
// after another.
#include <string>
#include <vector>

namespace btm {

struct GroupLayout {
  int world_size = 1;
  int num_experts = 1;
  int num_groups = 1;

  static GroupLayout make(int world_size, int num_experts);

  int first_rank(int group) const;  // first world rank of the group
  int group_size(int group) const;
  int group_of_rank(int world_rank) const;
  int group_of_expert(int expert) const { return expert % num_groups; }
  std::vector<int> experts_of_group(int group) const;
};

}  // namespace btm
