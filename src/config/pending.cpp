// Placeholder until the deck reader lands.
#include "btm/config.hpp"
#include "btm/error.hpp"
#include "btm/plan.hpp"
namespace btm {
Deck load_deck(const std::filesystem::path&, const std::vector<std::string>&) { throw Error("deck reader pending"); }
Deck parse_deck(const std::string&, const std::filesystem::path&, const std::vector<std::string>&) { throw Error("deck reader pending"); }
std::string to_toml(const Deck&) { throw Error("deck reader pending"); }
std::vector<std::string> Deck::expert_domains() const { return experts.domains.empty() ? data.train_domains : experts.domains; }
void print_plan(const Deck&, int, std::ostream&) { throw Error("plan pending"); }
}
