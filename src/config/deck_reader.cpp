// TOML -> Deck: every key is read through the schema (config/schema.hpp), which checks its type
// and range; cross-field rules follow in deck_checks.cpp.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "btm/config.hpp"
#include "btm/error.hpp"
#include "config/reader.hpp"
#include "config/schema.hpp"
#include "config/suggest.hpp"

namespace btm {

namespace deck {

std::string found(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: {
      std::string s = n.as_string()->get();
      if (s.size() > 60) s = s.substr(0, 57) + "...";
      return "a string (" + toml_quote(s) + ")";
    }
    case toml::node_type::integer: return "an integer (" + std::to_string(n.as_integer()->get()) + ")";
    case toml::node_type::floating_point: return "a float (" + toml_float(n.as_floating_point()->get()) + ")";
    case toml::node_type::boolean: return std::string("a boolean (") + (n.as_boolean()->get() ? "true" : "false") + ")";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

namespace {

std::string value_of(const toml::node& n) {
  if (auto* i = n.as_integer()) return std::to_string(i->get());
  if (auto* f = n.as_floating_point()) return toml_float(f->get());
  return found(n);
}

std::vector<std::string> keys_of(const std::vector<Field>& fields, const std::vector<std::string>& nested) {
  std::vector<std::string> keys;
  for (const auto& f : fields) keys.push_back(f.key);
  keys.insert(keys.end(), nested.begin(), nested.end());
  return keys;
}

// The node at a dotted path of tables ("seed.train"), or null.
const toml::node* lookup(const toml::table& root, const std::string& path) {
  const toml::node* node = &root;
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '.')) {
    const auto* table = node->as_table();
    node = table ? table->get(part) : nullptr;
    if (!node) return nullptr;
  }
  return node;
}

class Reader {
 public:
  explicit Reader(Places& places) : places_(places) {}

  // A [section] or [section.sub] table; absent means every default stays.
  void section(const toml::table& root, const std::string& path, const std::vector<Field>& fields,
               const std::vector<std::string>& nested = {}) {
    const toml::node* node = lookup(root, path);
    if (!node) return;
    if (!node->is_table()) {
      places_.note(path, node->source());
      places_.fail(path, "found " + found(*node), "a table ([" + path + "])");
    }
    fields_of(*node->as_table(), path, fields, nested);
  }

  // [[path]] entries (or an inline array of tables); present, it replaces the default list.
  template <class T>
  void array_of_tables(const toml::table& root, const std::string& path, std::vector<T>& out,
                       std::vector<Field> (*schema)(T&)) {
    const toml::node* node = lookup(root, path);
    if (!node) return;
    places_.note(path, node->source());
    const toml::array* array = node->as_array();
    if (!array) places_.fail(path, "found " + found(*node), "an array of tables ([[" + path + "]])");
    out.clear();
    for (std::size_t i = 0; i < array->size(); ++i) {
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      const toml::node& element = *array->get(i);
      places_.note(item_path, element.source());
      if (!element.is_table()) places_.fail(item_path, "found " + found(element), "a table");
      T item{};
      auto fields = schema(item);
      fields_of(*element.as_table(), item_path, fields, {});
      for (const auto& f : fields) {
        if (f.required && !element.as_table()->contains(f.key)) {
          places_.fail(item_path + "." + f.key, "missing", f.expected());
        }
      }
      out.push_back(std::move(item));
    }
  }

 private:
  // Reads every key of `table` into `fields`; `nested` names sub-tables read separately.
  void fields_of(const toml::table& table, const std::string& path, const std::vector<Field>& fields,
                 const std::vector<std::string>& nested) {
    places_.note(path, table.source());
    for (auto&& [key, node] : table) {
      const std::string key_path = path + "." + std::string(key.str());
      const std::string_view name = key.str();  // a lambda may not capture a structured binding (Clang 14)
      auto field = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == name; });
      if (field == fields.end()) {
        if (std::find(nested.begin(), nested.end(), key.str()) != nested.end()) continue;
        places_.note(key_path, key.source());
        places_.fail(key_path, "unknown key; " + suggestion(key.str(), keys_of(fields, nested)));
      }
      places_.note(key_path, node.source());
      value(node, *field, key_path);
    }
  }

  void value(const toml::node& n, const Field& f, const std::string& path) {
    auto wrong_type = [&] { places_.fail(path, "found " + found(n), f.expected()); };
    auto in_range = [&](double v) {
      if (!f.range.contains(v)) places_.fail(path, "found " + value_of(n), f.expected());
    };
    auto integer = [&]() -> std::int64_t {
      if (!n.is_integer()) wrong_type();
      std::int64_t v = n.as_integer()->get();
      in_range(static_cast<double>(v));
      return v;
    };
    std::visit(
        [&](auto* target) {
          using T = std::remove_pointer_t<decltype(target)>;
          if constexpr (std::is_same_v<T, int> || std::is_same_v<T, std::uint64_t>) {
            *target = static_cast<T>(integer());
          } else if constexpr (std::is_same_v<T, double>) {
            if (!n.is_number()) wrong_type();  // an integer is a fine float; nothing else is coerced
            double v = n.is_integer() ? static_cast<double>(n.as_integer()->get()) : n.as_floating_point()->get();
            in_range(v);
            *target = v;
          } else if constexpr (std::is_same_v<T, bool>) {
            if (!n.is_boolean()) wrong_type();
            *target = n.as_boolean()->get();
          } else if constexpr (std::is_same_v<T, std::string>) {
            *target = string(n, f, path);
          } else if constexpr (std::is_same_v<T, std::filesystem::path>) {
            if (!n.is_string()) wrong_type();
            *target = n.as_string()->get();  // kept as written: relative to the working directory
          } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
            *target = list(n, f, path);
          } else {
            *target = weights(n, f, path);
          }
        },
        f.target);
  }

  std::string string(const toml::node& n, const Field& f, const std::string& path) {
    if (!n.is_string()) places_.fail(path, "found " + found(n), f.expected());
    std::string s = n.as_string()->get();
    if (!f.choices.empty() && std::find(f.choices.begin(), f.choices.end(), s) == f.choices.end()) {
      auto near = closest(s, f.choices);
      places_.fail(path, "found " + toml_quote(s) + (near ? " (did you mean '" + *near + "'?)" : ""), f.expected());
    }
    if (f.name && !is_name(s)) places_.fail(path, "found " + toml_quote(s), kNameRule);
    return s;
  }

  std::vector<std::string> list(const toml::node& n, const Field& f, const std::string& path) {
    if (!n.is_array()) places_.fail(path, "found " + found(n), f.expected());
    std::vector<std::string> out;
    const auto& array = *n.as_array();
    for (std::size_t i = 0; i < array.size(); ++i) {
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      const toml::node& item = *array.get(i);
      places_.note(item_path, item.source());
      Field one{f.key, static_cast<std::string*>(nullptr), {}, f.choices, f.name, false};
      std::string s = string(item, one, item_path);
      if (std::find(out.begin(), out.end(), s) != out.end()) {
        places_.fail(item_path, toml_quote(s) + " is listed twice", "distinct values");
      }
      out.push_back(s);
    }
    return out;
  }

  std::map<std::string, double> weights(const toml::node& n, const Field& f, const std::string& path) {
    if (!n.is_table()) places_.fail(path, "found " + found(n), f.expected());
    std::map<std::string, double> out;
    for (auto&& [key, value] : *n.as_table()) {
      const std::string item_path = path + "." + std::string(key.str());
      places_.note(item_path, value.source());
      if (!value.is_number()) places_.fail(item_path, "found " + found(value), "a weight, " + f.expected());
      double w = value.is_integer() ? static_cast<double>(value.as_integer()->get()) : value.as_floating_point()->get();
      if (!f.range.contains(w)) places_.fail(item_path, "found " + value_of(value), "a weight, " + f.expected());
      out[std::string(key.str())] = w;
    }
    return out;
  }

  Places& places_;
};

// Top-level tables must be known sections.
void check_sections(const toml::table& root, Places& places) {
  for (auto&& [key, node] : root) {
    const std::string name(key.str());
    if (std::find(kSections.begin(), kSections.end(), name) != kSections.end()) continue;
    places.note(name, key.source());
    places.fail(name, std::string(node.is_table() ? "unknown section" : "unknown top-level key") + "; " +
                          suggestion(name, kSections));
  }
}

// Ensembles with router = "cluster" take top_k and temperature from [cluster] unless they
// give them.
void resolve_router_defaults(const toml::table& root, Deck& deck) {
  const toml::node* node = lookup(root, "eval.ensembles");
  const toml::array* items = node ? node->as_array() : nullptr;
  for (std::size_t i = 0; items && i < items->size() && i < deck.eval.ensembles.size(); ++i) {
    const toml::table* t = items->get(i)->as_table();
    EnsembleConfig& e = deck.eval.ensembles[i];
    if (!t || e.router != "cluster") continue;
    if (!t->contains("top_k")) e.top_k = deck.cluster.top_k;
    if (!t->contains("temperature")) e.temperature = deck.cluster.temperature;
  }
}

Deck read(const toml::table& root, Places& places) {
  Deck deck;
  Reader r(places);
  check_sections(root, places);
  r.section(root, "run", run_fields(deck.run));
  r.section(root, "data", data_fields(deck.data));
  r.section(root, "cluster", cluster_fields(deck.cluster));
  deck.cluster.given = root.contains("cluster");
  r.section(root, "model", model_fields(deck.model));
  r.section(root, "train", train_fields(deck.train));
  // Each training phase starts from [train]; its own [<phase>.train] overrides some keys.
  deck.seed.train = deck.experts.train = deck.baseline.train = deck.train;
  r.section(root, "seed", seed_fields(deck.seed), {"train"});
  r.section(root, "seed.train", train_fields(deck.seed.train));
  r.section(root, "experts", experts_fields(deck.experts), {"train"});
  r.section(root, "experts.train", train_fields(deck.experts.train));
  r.section(root, "baseline", baseline_fields(deck.baseline), {"train"});
  r.section(root, "baseline.train", train_fields(deck.baseline.train));
  r.section(root, "average", average_fields(deck.average), {"weighted"});
  r.array_of_tables(root, "average.weighted", deck.average.weighted, &weighted_fields);
  r.section(root, "eval", eval_fields(deck.eval), {"ensembles"});
  r.array_of_tables(root, "eval.ensembles", deck.eval.ensembles, &ensemble_fields);
  r.section(root, "mix", mix_fields(deck.mix), {"models"});
  r.array_of_tables(root, "mix.models", deck.mix.models, &mix_model_fields);
  deck.finetune.train = deck.train;
  deck.finetune.train.lr = kFinetuneLr;
  r.section(root, "finetune", finetune_fields(deck.finetune), {"train"});
  r.section(root, "finetune.train", train_fields(deck.finetune.train));
  resolve_router_defaults(root, deck);
  return deck;
}

}  // namespace
}  // namespace deck

Deck parse_deck(const std::string& toml_text, const std::filesystem::path& source_name,
                const std::vector<std::string>& overrides) {
  const std::string file = source_name.empty() ? std::string("<deck>") : source_name.string();
  toml::table root;
  try {
    root = toml::parse(toml_text, file);
  } catch (const toml::parse_error& e) {
    throw Error(file + ":" + std::to_string(e.source().begin.line) + ":" + std::to_string(e.source().begin.column) +
                ": TOML syntax error: " + std::string(e.description()));
  }
  deck::apply_overrides(root, overrides);
  deck::Places places(file);
  Deck deck = deck::read(root, places);
  deck.source = source_name;
  deck::check_deck(deck, places);
  return deck;
}

Deck load_deck(const std::filesystem::path& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw Error(path.string() + ": deck file not found (working directory: " +
                std::filesystem::current_path(ec).string() + ")");
  }
  if (std::filesystem::is_directory(path, ec)) throw Error(path.string() + ": is a folder; expected a deck file (.toml)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path.string() + ": cannot open the deck file (" + std::strerror(errno) + ")");
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(path.string() + ": cannot read the deck file (" + std::strerror(errno) + ")");
  return parse_deck(text.str(), path, overrides);
}

std::vector<std::string> Deck::expert_domains() const {
  if (!experts.domains.empty()) return experts.domains;
  return clustering() ? cluster_domains() : data.train_domains;
}

std::vector<std::string> Deck::cluster_domains() const {
  std::vector<std::string> out;
  if (!clustering()) return out;
  for (int i = 0; i < cluster.k; ++i) out.push_back("cluster-" + std::to_string(i));
  return out;
}

}  // namespace btm
