// The experts phase: split the world into expert groups; each group branches and trains
// its experts on their own domains, data parallel inside the group, independently of the
// other groups; finished experts are then registered in forest.h5.
#include <sstream>

#include "btm/collective_error.hpp"
#include "btm/error.hpp"
#include "btm/eval/domain_posterior.hpp"
#include "btm/expert_training.hpp"
#include "btm/group_layout.hpp"
#include "btm/log.hpp"
#include "btm/model/param_layout.hpp"
#include "btm/train/checkpoint.hpp"
#include "btm/train/stop_signal.hpp"

namespace btm {

namespace {

// Parameters (and optionally moments) an expert starts from, per experts.init.
StartPoint branch_point(const Deck& deck, const Dataset& data, Backend& backend, const Comm& group,
                        const std::string& expert, const Forest& forest) {
  const std::string& init = deck.experts.init;
  StartPoint sp;
  if (init == "seed") return branch_from_seed(deck, "experts.init = \"seed\"");
  if (init == "posterior_average") {
    std::vector<std::filesystem::path> files;
    std::vector<std::string> names;
    for (const auto& e : forest.experts()) {
      if (e.name == expert) continue;
      files.push_back(finished_expert_file(forest, e));
      names.push_back(e.name);
    }
    if (files.empty()) {
      throw Error("experts.init = \"posterior_average\" needs experts already in the forest (" +
                  deck.forest_file().string() + "); train a first set with experts.init = \"seed\"");
    }
    const std::vector<double> w = domain_posterior(deck, data, backend, files, expert, group, deck.experts.posterior_sequences);
    std::ostringstream parent;
    parent << "posterior_average(";
    for (std::size_t j = 0; j < files.size(); ++j) {
      ModelFile m = load_model(files[j]);
      if (sp.params.empty()) sp.params.assign(m.params.size(), 0.0f);
      if (m.params.size() != sp.params.size()) throw Error(files[j].string() + ": architecture differs from the other experts");
      for (std::size_t i = 0; i < m.params.size(); ++i) sp.params[i] += static_cast<float>(w[j]) * m.params[i];
      parent << (j ? "," : "") << names[j] << ":" << w[j];
    }
    parent << ")";
    sp.parent = parent.str();
    if (!deck.experts.reset_optimizer && group.is_root()) {
      log_line("phase=experts model=" + expert + " note: a posterior average has no optimizer state; "
               "AdamW starts from zero moments (experts.reset_optimizer = false applies to seed and named-expert branches)");
    }
    return sp;
  }
  // A named expert of the forest.
  const ForestEntry* e = forest.find(init);
  if (!e) {
    throw Error("experts.init = \"" + init + "\" is neither \"seed\", \"posterior_average\" nor an expert of " +
                deck.forest_file().string());
  }
  const std::filesystem::path file = finished_expert_file(forest, *e);
  if (deck.experts.reset_optimizer) {
    sp.params = load_model(file).params;
  } else {
    Checkpoint parent = load_checkpoint(file);
    sp.params = std::move(parent.model.params);
    sp.m = std::move(parent.m);
    sp.v = std::move(parent.v);
    sp.adam_steps = parent.state.adam_step_offset + parent.state.step;
  }
  sp.parent = init;
  return sp;
}

// Marks `failure.name` failed in the forest's bookkeeping (the group's leader writes the
// record) and logs it; the record's own write failing is logged, not fatal: the phase's
// summary still names the expert.
void record_failure(const Deck& deck, const Comm& group, ForestFailure failure, std::vector<ForestFailure>* failures) {
  if (group.is_root()) {
    try {
      Forest::register_failure(deck.forest_file(), failure);
    } catch (const std::exception& e) {
      log_line("phase=experts model=" + failure.name + " warning: cannot record the failure in " +
               deck.forest_file().string() + ".d: " + e.what());
    }
    log_line("phase=experts model=" + failure.name + " status=failed reason=\"" + failure.reason + "\"");
  }
  if (failures) failures->push_back(std::move(failure));
}

}  // namespace

StartPoint branch_from_seed(const Deck& deck, const std::string& who) {
  if (!model_is_complete(deck.seed_file())) {
    throw Error(who + " needs a finished seed model at " + deck.seed_file().string() + "; run the seed phase first");
  }
  Checkpoint seed = load_checkpoint(deck.seed_file());
  StartPoint sp;
  sp.params = std::move(seed.model.params);
  if (!deck.experts.reset_optimizer) {
    sp.m = std::move(seed.m);
    sp.v = std::move(seed.v);
    sp.adam_steps = seed.state.adam_step_offset + seed.state.step;
  }
  sp.parent = "seed";
  return sp;
}

PhaseStatus train_group_experts(const Deck& deck, const Dataset& data, Backend& backend, const Comm& group,
                                const std::vector<std::string>& experts, const Forest& forest,
                                const TrainControl& control, std::vector<ForestFailure>* failures) {
  for (const auto& name : experts) {
    // A stop signal between two experts: the next one starts in the re-run.
    if (group.any(StopSignals::requested())) {
      if (group.is_root()) log_line("phase=experts status=interrupted before=" + name + " (re-run to resume)");
      return PhaseStatus::interrupted;
    }
    TrainJob job;
    job.phase = "experts";
    job.name = name;
    job.domain = name;
    job.file = deck.expert_file(name);
    job.domains = {name};
    job.valid_domains = {name};
    job.tokens = deck.experts.tokens;
    job.train = deck.experts.train;
    auto start = [&] { return branch_point(deck, data, backend, group, name, forest); };
    try {
      const TrainOutcome outcome = train_model(deck, data, backend, group, job, start, control);
      if (outcome == TrainOutcome::interrupted) return PhaseStatus::interrupted;
      // Registered at once by the group's leader, in a record of its own (no lock: other groups
      // or array tasks may finish at the same moment): if another group dies later, every expert
      // finished so far is already in the forest.
      agree_on_failure(group, [&] {
        if (!group.is_root()) return;
        if (outcome == TrainOutcome::already_complete && !forest.find(name)) {
          log_line("phase=experts model=" + name + " note: finished but not in " + deck.forest_file().string() +
                   " (removed?): registered again, as the deck lists it; drop it from experts.domains to keep it out");
        }
        Forest::register_entry(deck.forest_file(), forest_entry_of(job.file, deck.forest_file()));
      });
    } catch (const CollectiveError& e) {
      // Every rank of the group is here together: this expert is failed, the group goes on.
      record_failure(deck, group, ForestFailure{name, e.what(), ""}, failures);
    }
  }
  return PhaseStatus::done;
}

std::filesystem::path finished_expert_file(const Forest& forest, const ForestEntry& entry,
                                           const std::string& data_tokenizer, const std::filesystem::path& data_file) {
  const std::filesystem::path file = forest.resolve(entry);
  const std::string where = forest.path().string() + " lists expert \"" + entry.name + "\" with file " + file.string();
  if (!std::filesystem::exists(file)) {
    throw Error(where + ", which does not exist; restore it or remove the expert (btm forest remove)");
  }
  const h5::File f = h5::open_for_read(file, "an expert model file");
  if (!f.exists("/config")) {
    throw Error(where + ", which is not a btm model file (no /config); restore it or remove the expert "
                "(btm forest remove)");
  }
  if (!data_tokenizer.empty() && f.exists("/tokenizer/model") && read_tokenizer(f).model != data_tokenizer) {
    throw Error(where + ", whose tokenizer differs from the one of " + data_file.string() +
                "; experts must be trained on this run's data (restore the file or remove the expert)");
  }
  if (!model_is_complete(file)) {
    throw Error(where + ", which is an unfinished training checkpoint; finish it (btm run DECK --phases experts) "
                "or remove the expert (btm forest remove)");
  }
  return file;
}

ForestEntry forest_entry_of(const std::filesystem::path& model_file, const std::filesystem::path& forest_file) {
  h5::File f = h5::open_for_read(model_file, "an expert model file");
  ForestEntry e;
  const ModelMeta meta = read_meta(f);
  e.name = meta.name.empty() ? model_file.stem().string() : meta.name;
  e.domain = meta.domain;
  e.parent = meta.parent;
  e.architecture = read_model_config(f).architecture_hash();
  e.tokens = f.exists("/train") ? f.attr<std::uint64_t>("/train", "tokens") : 0;
  // Stored relative to the forest's folder when inside it, so a run folder can be moved.
  const auto folder = std::filesystem::absolute(forest_file).parent_path();
  const auto abs = std::filesystem::absolute(model_file);
  const auto rel = abs.lexically_relative(folder);
  e.file = (!rel.empty() && rel.native().rfind("..", 0) != 0) ? rel.string() : abs.string();
  return e;
}

ForestEntry add_expert_file(const std::filesystem::path& forest_file, const std::filesystem::path& model,
                            const std::string& name, const std::string& domain, bool replace) {
  if (!model_is_complete(model)) {
    throw Error(model.string() +
                " is not a finished model (missing, or a training checkpoint that has not reached its last step)");
  }
  ForestEntry entry = forest_entry_of(model, forest_file);
  if (!name.empty()) entry.name = name;
  if (!domain.empty()) entry.domain = domain;
  if (entry.name == "seed" || entry.name == "baseline") {
    throw Error("'" + entry.name + "' is the name of a phase's model; give the expert another name (--name)");
  }
  const std::string tokenizer = read_tokenizer(h5::open_for_read(model, "a model file")).model;
  Forest::update(forest_file, [&](Forest& f) {
    if (const ForestEntry* old = f.find(entry.name); old && !replace) {
      throw Error(forest_file.string() + " already has an expert named '" + entry.name + "' (" + old->file +
                  "); choose another name (--name), or replace it (--replace)");
    }
    // One other expert stands for the forest's tokenizer: each was checked when it came in.
    for (const auto& e : f.experts()) {
      const auto other = f.resolve(e);
      if (e.name == entry.name || !std::filesystem::exists(other)) continue;
      if (read_tokenizer(h5::open_for_read(other, "an expert model file")).model != tokenizer) {
        throw Error(model.string() + " uses another tokenizer than the forest's experts (e.g. '" + e.name + "', " +
                    other.string() + "); experts of one forest must share a tokenizer");
      }
      break;
    }
    f.add(entry);
  });
  return entry;
}

PhaseStatus run_experts(const Deck& deck, const Comm& world) { return run_experts(deck, world, TrainControl{}); }

PhaseStatus run_experts(const Deck& deck, const Comm& world, const TrainControl& control) {
  const Dataset data(deck.train_data_file());
  const std::vector<std::string> experts = expert_names_of(deck, data);
  if (experts.empty()) throw Error("no experts to train: set data.train_domains or experts.domains");
  const GroupLayout layout = GroupLayout::make(world.size(), static_cast<int>(experts.size()));
  const int g = layout.group_of_rank(world.rank());
  Forest forest = Forest::load(deck.forest_file());
  forest.order_as(experts);
  std::vector<std::string> mine;
  for (int e : layout.experts_of_group(g)) mine.push_back(experts[e]);
  if (world.is_root()) {
    for (int gi = 0; gi < layout.num_groups; ++gi) {
      std::string names;
      for (int e : layout.experts_of_group(gi)) names += (names.empty() ? "" : ",") + experts[e];
      log_line("phase=experts group=" + std::to_string(gi) + " ranks=" + std::to_string(layout.first_rank(gi)) + "-" +
               std::to_string(layout.first_rank(gi) + layout.group_size(gi) - 1) + " experts=" + names);
    }
  }
  OwnedComm group(world, g, world.rank());
  auto backend = make_backend(deck.run.backend, {deck.run.blas_threads});
  std::vector<ForestFailure> failed;
  const PhaseStatus status = train_group_experts(deck, data, *backend, group.view(), mine, forest, control, &failed);

  // Groups meet again only here, after all their training. A group that finishes first
  // says so: if another group's rank died, nothing but stopping the job ends this wait.
  const bool interrupted = world.any_waiting(status == PhaseStatus::interrupted, 600.0, [&](double waited) {
    if (!group.view().is_root()) return;
    log_line("phase=experts group=" + std::to_string(g) + " status=waiting seconds=" +
             std::to_string(static_cast<long long>(waited)) +
             " note: this group's experts are finished and registered in " + deck.forest_file().string() +
             "; waiting for the other groups (if one of their ranks died, stop the job: a re-run skips every "
             "finished expert)");
  });
  // Every group's failures, from its leader (the ranks of a group agree on them).
  std::string mine_failed;
  if (group.view().is_root()) {
    for (const auto& f : failed) mine_failed += f.name + "\t" + f.reason + "\n";
  }
  std::string summary;
  std::size_t failures = 0;
  for (const auto& lines : world.allgather(mine_failed)) {
    std::istringstream in(lines);
    for (std::string line; std::getline(in, line);) {
      const auto tab = line.find('\t');
      summary += "\n  " + line.substr(0, tab) + ": " + line.substr(tab + 1);
      ++failures;
    }
  }
  if (world.is_root()) {
    Forest now = Forest::load(deck.forest_file());
    now.order_as(experts);
    now.save(deck.forest_file());
    log_line("phase=experts forest=" + deck.forest_file().string() + " experts=" + std::to_string(now.experts().size()) +
             " failed=" + std::to_string(failures));
  }
  if (interrupted) return PhaseStatus::interrupted;
  if (failures > 0) {
    world.barrier();  // forest.h5 is written before any rank reports
    throw ModelsFailed(std::to_string(failures) + " expert(s) failed; the others are finished and registered in " +
                       deck.forest_file().string() + " (failures under /failed):" + summary +
                       "\nFix the cause, then run the same command again: it trains only the failed and unfinished "
                       "experts (a failed one resumes from its last good checkpoint; delete its file to start it over)");
  }
  return PhaseStatus::done;
}

Forest forest_in_deck_order(const Deck& deck, const Dataset& data, const Comm& world) {
  Forest forest = Forest::load(deck.forest_file());
  forest.order_as(expert_names_of(deck, data));
  // Array tasks register their experts in finish order; the manifest others read is the deck's.
  if (world.is_root() && !forest.experts().empty()) forest.save(deck.forest_file());
  world.barrier();
  return forest;
}

}  // namespace btm
