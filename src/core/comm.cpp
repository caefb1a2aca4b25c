#include "btm/comm.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "btm/error.hpp"

namespace btm {

Comm::Comm(MPI_Comm comm) : comm_(comm) {
  BTM_MPI(MPI_Comm_rank(comm_, &rank_));
  BTM_MPI(MPI_Comm_size(comm_, &size_));
}

void Comm::barrier() const { BTM_MPI(MPI_Barrier(comm_)); }

void Comm::allreduce_sum(float* data, std::size_t n) const {
  if (n > 0) BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_));
}
void Comm::allreduce_sum(double* data, std::size_t n) const {
  if (n > 0) BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, comm_));
}
void Comm::allreduce_sum(std::uint64_t* data, std::size_t n) const {
  if (n > 0) BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_UINT64_T, MPI_SUM, comm_));
}
double Comm::allreduce_sum(double value) const {
  allreduce_sum(&value, 1);
  return value;
}
std::uint64_t Comm::allreduce_sum(std::uint64_t value) const {
  allreduce_sum(&value, 1);
  return value;
}
double Comm::allreduce_max(double value) const {
  BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, comm_));
  return value;
}
std::int64_t Comm::allreduce_max(std::int64_t value) const {
  BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MAX, comm_));
  return value;
}
bool Comm::any(bool flag) const {
  int v = flag ? 1 : 0;
  BTM_MPI(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LOR, comm_));
  return v != 0;
}

bool Comm::any_waiting(bool flag, double report_every_s, const std::function<void(double)>& waiting) const {
  int in = flag ? 1 : 0, out = 0, done = 0;
  MPI_Request request;
  BTM_MPI(MPI_Iallreduce(&in, &out, 1, MPI_INT, MPI_LOR, comm_, &request));
  const auto start = std::chrono::steady_clock::now();
  double next_report = std::min(5.0, report_every_s);
  for (;;) {
    BTM_MPI(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) return out != 0;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited >= next_report) {
      waiting(waited);
      next_report = waited + report_every_s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Comm::broadcast(std::string& value, int root) const {
  std::uint64_t n = value.size();
  BTM_MPI(MPI_Bcast(&n, 1, MPI_UINT64_T, root, comm_));
  value.resize(n);
  broadcast(value.data(), n, root);
}

void Comm::broadcast(void* data, std::size_t bytes, int root) const {
  constexpr std::size_t chunk = std::size_t(1) << 30;  // MPI counts are int
  auto* p = static_cast<char*>(data);
  for (std::size_t off = 0; off < bytes; off += chunk) {
    int n = static_cast<int>(std::min(chunk, bytes - off));
    BTM_MPI(MPI_Bcast(p + off, n, MPI_BYTE, root, comm_));
  }
}

std::uint64_t Comm::exclusive_prefix_sum(std::uint64_t value) const {
  std::uint64_t out = 0;
  BTM_MPI(MPI_Exscan(&value, &out, 1, MPI_UINT64_T, MPI_SUM, comm_));
  return rank_ == 0 ? 0 : out;
}

std::vector<std::string> Comm::allgather(const std::string& value) const {
  int n = static_cast<int>(value.size());
  std::vector<int> sizes(size_), offsets(size_);
  BTM_MPI(MPI_Allgather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, comm_));
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[r] = total;
    total += sizes[r];
  }
  std::string all(total, '\0');
  BTM_MPI(MPI_Allgatherv(value.data(), n, MPI_CHAR, all.data(), sizes.data(), offsets.data(),
                         MPI_CHAR, comm_));
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = all.substr(offsets[r], sizes[r]);
  return out;
}

OwnedComm::OwnedComm(const Comm& parent, int color, int key) {
  BTM_MPI(MPI_Comm_split(parent.handle(), color, key, &comm_));
}
OwnedComm::~OwnedComm() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}
OwnedComm::OwnedComm(OwnedComm&& other) noexcept : comm_(std::exchange(other.comm_, MPI_COMM_NULL)) {}
OwnedComm& OwnedComm::operator=(OwnedComm&& other) noexcept {
  if (this != &other) {
    if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    comm_ = std::exchange(other.comm_, MPI_COMM_NULL);
  }
  return *this;
}

}  // namespace btm
