#pragma once
// The deck schema: one list of fields per TOML table, each naming its key, its type (through
// the struct member it fills), and the values it allows. The reader, the writer (to_toml) and
// the checks all walk these lists, so every key is described in exactly one place.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "btm/config.hpp"

namespace btm::deck {

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// Allowed interval of a number. `zero_ok` also admits 0 ("0: derived" keys).
struct Range {
  double lo = -kInf;
  double hi = kInf;
  bool lo_open = false;
  bool hi_open = false;
  bool zero_ok = false;
  bool contains(double v) const;  // false for NaN
};

using Target = std::variant<int*, std::uint64_t*, double*, bool*, std::string*, std::filesystem::path*,
                            std::vector<std::string>*, std::map<std::string, double>*>;

struct Field {
  std::string key;
  Target target;
  Range range;                       // numbers, and the values of a map
  std::vector<std::string> choices;  // strings and list items; empty: free text
  bool name = false;      // strings and list items that become file names (see is_name)
  bool required = false;  // must be given (elements of arrays of tables)

  // What the key accepts, as printed after "expected": "an integer in 1..65536".
  std::string expected() const;
};

// Names of domains, experts, averages, ensembles and runs end up in file names:
// letters, digits, '.', '_', '-', '+', not starting with '.'.
bool is_name(std::string_view s);
inline const char* kNameRule = "a string of letters, digits, '.', '_', '-', '+' (not starting with '.')";

// The deck's top-level tables, in file order.
inline const std::vector<std::string> kSections = {"run",     "data",     "cluster", "model", "train",    "seed",
                                                   "experts", "baseline", "average", "mix",   "finetune", "eval"};

std::vector<Field> run_fields(RunConfig& c);
std::vector<Field> data_fields(DataConfig& c);
std::vector<Field> cluster_fields(ClusterConfig& c);
std::vector<Field> model_fields(ModelConfig& c);
// The MoE keys (is_moe_model_key) are echoed by to_toml only for MoE models, so a dense
// deck's resolved text is unchanged.
bool is_moe_model_key(std::string_view key);
std::vector<Field> train_fields(TrainConfig& c);
std::vector<Field> seed_fields(SeedConfig& c);          // without the [seed.train] sub-table
std::vector<Field> experts_fields(ExpertsConfig& c);    // without [experts.train]
std::vector<Field> baseline_fields(BaselineConfig& c);  // without [baseline.train]
std::vector<Field> average_fields(AverageConfig& c);    // without [[average.weighted]]
std::vector<Field> weighted_fields(WeightedAverage& c);
std::vector<Field> eval_fields(EvalConfig& c);          // without [[eval.ensembles]]
std::vector<Field> ensemble_fields(EnsembleConfig& c);
std::vector<Field> mix_fields(MixConfig& c);            // without [[mix.models]]
std::vector<Field> mix_model_fields(MixModel& c);
std::vector<Field> finetune_fields(FinetuneConfig& c);  // without [finetune.train]

// A TOML basic string literal: "..." with \\, \" and control characters escaped.
std::string toml_quote(std::string_view s);
// Shortest text that reads back as the same double, always TOML float syntax ("3.0", "1e-08").
std::string toml_float(double v);

}  // namespace btm::deck
