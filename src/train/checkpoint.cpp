#include "btm/train/checkpoint.hpp"

#include "btm/error.hpp"

namespace btm {

namespace {

void write_state(h5::File& f, const TrainState& s) {
  f.create_group("/train");
  f.set_attr<std::int64_t>("/train", "step", s.step);
  f.set_attr<std::int64_t>("/train", "total_steps", s.total_steps);
  f.set_attr<std::int64_t>("/train", "adam_step_offset", s.adam_step_offset);
  f.set_attr<std::uint64_t>("/train", "tokens", s.tokens);
  f.set_attr<std::uint64_t>("/train", "data_seed", s.data_seed);
  f.set_attr<std::uint64_t>("/train", "cursor_sample", s.cursor.sample);
  f.set_attr<std::int8_t>("/train", "complete", s.complete ? 1 : 0);
  f.write_strings("/train/cursor_domains", s.cursor_domains);
  f.write<std::uint64_t>("/train/cursor_consumed", s.cursor.consumed);

  const TrainMetrics& m = s.metrics;
  f.create_group("/metrics");
  f.write<std::int64_t>("/metrics/step", m.step);
  f.write<double>("/metrics/loss", m.loss);
  f.write<double>("/metrics/lr", m.lr);
  f.write<double>("/metrics/grad_norm", m.grad_norm);
  f.write<double>("/metrics/tokens_per_s", m.tokens_per_s);
  if (!m.aux_loss.empty()) f.write<double>("/metrics/aux_loss", m.aux_loss);
  f.write<std::int64_t>("/metrics/valid_step", m.valid_step);
  f.create_group("/metrics/valid");
  for (const auto& [domain, values] : m.valid) f.write<double>("/metrics/valid/" + domain, values);
}

TrainState read_state(const h5::File& f) {
  if (!f.exists("/train")) throw Error(f.path().string() + ": not a training checkpoint (no /train)");
  TrainState s;
  s.step = f.attr<std::int64_t>("/train", "step");
  s.total_steps = f.attr<std::int64_t>("/train", "total_steps");
  if (f.has_attr("/train", "adam_step_offset")) s.adam_step_offset = f.attr<std::int64_t>("/train", "adam_step_offset");
  s.tokens = f.attr<std::uint64_t>("/train", "tokens");
  s.data_seed = f.attr<std::uint64_t>("/train", "data_seed");
  s.cursor.sample = f.attr<std::uint64_t>("/train", "cursor_sample");
  s.complete = f.attr<std::int8_t>("/train", "complete") != 0;
  s.cursor_domains = f.read_strings("/train/cursor_domains");
  s.cursor.consumed = f.read<std::uint64_t>("/train/cursor_consumed");
  TrainMetrics& m = s.metrics;
  m.step = f.read<std::int64_t>("/metrics/step");
  m.loss = f.read<double>("/metrics/loss");
  m.lr = f.read<double>("/metrics/lr");
  m.grad_norm = f.read<double>("/metrics/grad_norm");
  m.tokens_per_s = f.read<double>("/metrics/tokens_per_s");
  if (f.exists("/metrics/aux_loss")) m.aux_loss = f.read<double>("/metrics/aux_loss");
  m.valid_step = f.read<std::int64_t>("/metrics/valid_step");
  for (const auto& domain : f.list("/metrics/valid")) {
    m.valid[domain] = f.read<double>("/metrics/valid/" + domain);
  }
  return s;
}

}  // namespace

void save_checkpoint(const std::filesystem::path& path, const Checkpoint& c) {
  const ParamLayout layout = ParamLayout::llama(c.model.config);
  h5::AtomicWrite w(path);
  h5::File& f = w.file();
  write_model_config(f, c.model.config);
  write_params(f, "/params", layout, c.model.params);
  write_meta(f, c.model.meta);
  if (!c.model.tokenizer.model.empty()) write_tokenizer(f, c.model.tokenizer);
  if (!c.m.empty()) {
    write_params(f, "/optim/m", layout, c.m);
    write_params(f, "/optim/v", layout, c.v);
  }
  write_state(f, c.state);
  w.commit();
}

Checkpoint load_checkpoint(const std::filesystem::path& path) {
  h5::File f = h5::open_for_read(path, "a btm training checkpoint");
  Checkpoint c;
  c.model.config = read_model_config(f);
  const ParamLayout layout = ParamLayout::llama(c.model.config);
  c.model.params = read_params(f, "/params", layout);
  c.model.meta = read_meta(f);
  if (f.exists("/tokenizer/model")) c.model.tokenizer = read_tokenizer(f);
  if (f.exists("/optim/m")) {
    c.m = read_params(f, "/optim/m", layout);
    c.v = read_params(f, "/optim/v", layout);
  }
  c.state = read_state(f);
  return c;
}

TrainState read_train_state(const std::filesystem::path& path) {
  h5::File f = h5::open_for_read(path, "a btm training checkpoint");
  return read_state(f);
}

bool model_is_complete(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) return false;
  h5::File f(path, h5::File::Mode::read);
  if (!f.exists("/params")) return false;
  if (!f.exists("/train")) return true;  // written in one go (averages)
  return f.attr<std::int8_t>("/train", "complete") != 0;
}

}  // namespace btm
