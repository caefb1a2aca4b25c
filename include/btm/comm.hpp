#pragma once
// A thin, non-owning view of an MPI communicator with the few collectives btm uses.
#include <mpi.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace btm {

class Comm {
 public:
  explicit Comm(MPI_Comm comm = MPI_COMM_WORLD);
  static Comm world() { return Comm(MPI_COMM_WORLD); }

  MPI_Comm handle() const { return comm_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  void barrier() const;
  void allreduce_sum(float* data, std::size_t n) const;
  void allreduce_sum(double* data, std::size_t n) const;
  void allreduce_sum(std::uint64_t* data, std::size_t n) const;
  double allreduce_sum(double value) const;
  std::uint64_t allreduce_sum(std::uint64_t value) const;
  double allreduce_max(double value) const;
  std::int64_t allreduce_max(std::int64_t value) const;
  // True on every rank when any rank passes true.
  bool any(bool flag) const;
  // any(), for ranks that may wait long for the others: polls (sleeping in between, so a
  // waiting rank leaves its core free) and calls `waiting(seconds_waited)` when the others
  // are not there after min(5 s, report_every_s), then every `report_every_s` seconds.
  bool any_waiting(bool flag, double report_every_s, const std::function<void(double)>& waiting) const;
  void broadcast(std::string& value, int root = 0) const;
  void broadcast(void* data, std::size_t bytes, int root = 0) const;
  std::uint64_t exclusive_prefix_sum(std::uint64_t value) const;
  // Every rank's string, in rank order, on every rank.
  std::vector<std::string> allgather(const std::string& value) const;

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

// Owns a communicator made by MPI_Comm_split; frees it on destruction.
class OwnedComm {
 public:
  OwnedComm() = default;
  OwnedComm(const Comm& parent, int color, int key);
  ~OwnedComm();
  OwnedComm(OwnedComm&& other) noexcept;
  OwnedComm& operator=(OwnedComm&& other) noexcept;
  OwnedComm(const OwnedComm&) = delete;
  OwnedComm& operator=(const OwnedComm&) = delete;

  Comm view() const { return Comm(comm_); }
  bool valid() const { return comm_ != MPI_COMM_NULL; }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace btm
