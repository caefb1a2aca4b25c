#include "btm/group_layout.hpp"

#include <algorithm>

#include "btm/error.hpp"

namespace btm {

GroupLayout GroupLayout::make(int world_size, int num_experts) {
  if (world_size < 1) throw Error("group layout: world size must be at least 1");
  if (num_experts < 1) throw Error("group layout: there must be at least one expert");
  return GroupLayout{world_size, num_experts, std::min(world_size, num_experts)};
}

int GroupLayout::first_rank(int group) const {
  return static_cast<int>(static_cast<long long>(group) * world_size / num_groups);
}

int GroupLayout::group_size(int group) const { return first_rank(group + 1) - first_rank(group); }

int GroupLayout::group_of_rank(int world_rank) const {
  // Largest g with first_rank(g) <= world_rank.
  int g = static_cast<int>((static_cast<long long>(world_rank) * num_groups) / world_size);
  while (g + 1 < num_groups && first_rank(g + 1) <= world_rank) ++g;
  while (g > 0 && first_rank(g) > world_rank) --g;
  return g;
}

std::vector<int> GroupLayout::experts_of_group(int group) const {
  std::vector<int> out;
  for (int e = group; e < num_experts; e += num_groups) out.push_back(e);
  return out;
}

}  // namespace btm
