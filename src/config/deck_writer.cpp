// Deck -> TOML: the complete resolved deck, every key in schema order, each training phase's
// [<phase>.train] written out in full. parse_deck(to_toml(d)) gives back d.
#include <sstream>

#include "btm/config.hpp"
#include "config/schema.hpp"

namespace btm {

namespace {

using deck::Field;

std::string value_text(const deck::Target& target) {
  struct Text {
    std::string operator()(const int* v) const { return std::to_string(*v); }
    std::string operator()(const std::uint64_t* v) const { return std::to_string(*v); }
    std::string operator()(const double* v) const { return deck::toml_float(*v); }
    std::string operator()(const bool* v) const { return *v ? "true" : "false"; }
    std::string operator()(const std::string* v) const { return deck::toml_quote(*v); }
    std::string operator()(const std::filesystem::path* v) const { return deck::toml_quote(v->string()); }
    std::string operator()(const std::vector<std::string>* v) const {
      std::string out = "[";
      for (std::size_t i = 0; i < v->size(); ++i) out += (i ? ", " : "") + deck::toml_quote((*v)[i]);
      return out + "]";
    }
    std::string operator()(const std::map<std::string, double>* v) const {
      if (v->empty()) return "{}";
      std::string out = "{ ";
      bool first = true;
      for (const auto& [k, w] : *v) {
        out += (first ? "" : ", ") + deck::toml_quote(k) + " = " + deck::toml_float(w);
        first = false;
      }
      return out + " }";
    }
  };
  return std::visit(Text{}, target);
}

void table(std::ostream& out, const std::string& header, const std::vector<Field>& fields, bool array_entry = false) {
  out << "\n" << (array_entry ? "[[" : "[") << header << (array_entry ? "]]" : "]") << "\n";
  for (const auto& f : fields) out << f.key << " = " << value_text(f.target) << "\n";
}

}  // namespace

std::string to_toml(const Deck& resolved) {
  Deck d = resolved;  // the schema binds mutable members
  std::ostringstream out;
  out << "# btm deck, resolved: every key, defaults filled in\n";
  table(out, "run", deck::run_fields(d.run));
  table(out, "data", deck::data_fields(d.data));
  if (d.cluster.given) table(out, "cluster", deck::cluster_fields(d.cluster));
  auto model = deck::model_fields(d.model);
  if (!d.model.is_moe()) std::erase_if(model, [](const Field& f) { return deck::is_moe_model_key(f.key); });
  table(out, "model", model);
  table(out, "train", deck::train_fields(d.train));
  auto seed = deck::seed_fields(d.seed);
  if (d.seed.init.empty()) std::erase_if(seed, [](const Field& f) { return f.key == "init"; });  // echoed when set
  table(out, "seed", seed);
  table(out, "seed.train", deck::train_fields(d.seed.train));
  table(out, "experts", deck::experts_fields(d.experts));
  table(out, "experts.train", deck::train_fields(d.experts.train));
  table(out, "baseline", deck::baseline_fields(d.baseline));
  table(out, "baseline.train", deck::train_fields(d.baseline.train));
  table(out, "average", deck::average_fields(d.average));
  if (d.average.weighted.empty()) out << "weighted = []\n";
  for (auto& w : d.average.weighted) table(out, "average.weighted", deck::weighted_fields(w), true);
  table(out, "mix", deck::mix_fields(d.mix));
  if (d.mix.models.empty()) out << "models = []\n";
  for (auto& m : d.mix.models) table(out, "mix.models", deck::mix_model_fields(m), true);
  table(out, "finetune", deck::finetune_fields(d.finetune));
  table(out, "finetune.train", deck::train_fields(d.finetune.train));
  table(out, "eval", deck::eval_fields(d.eval));
  if (d.eval.ensembles.empty()) out << "ensembles = []\n";
  for (auto& e : d.eval.ensembles) table(out, "eval.ensembles", deck::ensemble_fields(e), true);
  return out.str();
}

}  // namespace btm
