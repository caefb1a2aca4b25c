// Placeholder until the BTM phases land.
#include "btm/error.hpp"
#include "btm/phases.hpp"
namespace btm {
PhaseStatus run_experts(const Deck&, const Comm&) { throw Error("experts pending"); }
PhaseStatus run_baseline(const Deck&, const Comm&) { throw Error("baseline pending"); }
void run_average(const Deck&, const Comm&) { throw Error("average pending"); }
void run_eval(const Deck&, const Comm&) { throw Error("eval pending"); }
}
