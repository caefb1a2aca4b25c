// PMPI interception behind btm::message_counter (see include/btm/message_counter.hpp).
// Each wrapper counts the call against its communicator's membership (the world ranks it
// contains), then forwards to the PMPI entry point. Membership, not the handle, is the key
// because handles are reused after MPI_Comm_free.
#include "btm/message_counter.hpp"

#include <map>
#include <mutex>
#include <vector>

namespace btm::message_counter {
namespace {

using Members = std::vector<int>;

struct State {
  bool active = false;
  std::map<MPI_Comm, Members> members_of;  // cache, invalidated by MPI_Comm_free
  std::map<Members, std::uint64_t> calls;
  std::mutex mutex;
};

State& state() {
  static State s;
  return s;
}

Members members(MPI_Comm comm) {
  MPI_Group group, world_group;
  PMPI_Comm_group(comm, &group);
  PMPI_Comm_group(MPI_COMM_WORLD, &world_group);
  int n = 0;
  PMPI_Group_size(group, &n);
  std::vector<int> local(n), world(n);
  for (int i = 0; i < n; ++i) local[i] = i;
  PMPI_Group_translate_ranks(group, n, local.data(), world_group, world.data());
  PMPI_Group_free(&group);
  PMPI_Group_free(&world_group);
  return world;
}

void record(MPI_Comm comm) {
  State& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.active || comm == MPI_COMM_NULL) return;
  auto it = s.members_of.find(comm);
  if (it == s.members_of.end()) it = s.members_of.emplace(comm, members(comm)).first;
  ++s.calls[it->second];
}

}  // namespace

void start() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.calls.clear();
  s.active = true;
}

void stop() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  s.active = false;
}

std::uint64_t calls_on(MPI_Comm comm) {
  Members m = members(comm);
  State& s = state();
  std::lock_guard lock(s.mutex);
  auto it = s.calls.find(m);
  return it == s.calls.end() ? 0 : it->second;
}

std::uint64_t calls_not_on(MPI_Comm comm) { return total_calls() - calls_on(comm); }

std::uint64_t total_calls() {
  State& s = state();
  std::lock_guard lock(s.mutex);
  std::uint64_t total = 0;
  for (const auto& [m, n] : s.calls) total += n;
  return total;
}

}  // namespace btm::message_counter

using btm::message_counter::record;

extern "C" {

int MPI_Comm_free(MPI_Comm* comm) {
  {
    auto& s = btm::message_counter::state();
    std::lock_guard lock(s.mutex);
    s.members_of.erase(*comm);
  }
  return PMPI_Comm_free(comm);
}

int MPI_Send(const void* buf, int count, MPI_Datatype dt, int dest, int tag, MPI_Comm comm) {
  record(comm);
  return PMPI_Send(buf, count, dt, dest, tag, comm);
}

int MPI_Ssend(const void* buf, int count, MPI_Datatype dt, int dest, int tag, MPI_Comm comm) {
  record(comm);
  return PMPI_Ssend(buf, count, dt, dest, tag, comm);
}

int MPI_Isend(const void* buf, int count, MPI_Datatype dt, int dest, int tag, MPI_Comm comm, MPI_Request* req) {
  record(comm);
  return PMPI_Isend(buf, count, dt, dest, tag, comm, req);
}

int MPI_Recv(void* buf, int count, MPI_Datatype dt, int src, int tag, MPI_Comm comm, MPI_Status* st) {
  record(comm);
  return PMPI_Recv(buf, count, dt, src, tag, comm, st);
}

int MPI_Irecv(void* buf, int count, MPI_Datatype dt, int src, int tag, MPI_Comm comm, MPI_Request* req) {
  record(comm);
  return PMPI_Irecv(buf, count, dt, src, tag, comm, req);
}

int MPI_Sendrecv(const void* sb, int sc, MPI_Datatype st, int dest, int stag, void* rb, int rc, MPI_Datatype rt, int src, int rtag, MPI_Comm comm, MPI_Status* status) {
  record(comm);
  return PMPI_Sendrecv(sb, sc, st, dest, stag, rb, rc, rt, src, rtag, comm, status);
}

int MPI_Barrier(MPI_Comm comm) {
  record(comm);
  return PMPI_Barrier(comm);
}

int MPI_Ibarrier(MPI_Comm comm, MPI_Request* req) {
  record(comm);
  return PMPI_Ibarrier(comm, req);
}

int MPI_Bcast(void* buf, int count, MPI_Datatype dt, int root, MPI_Comm comm) {
  record(comm);
  return PMPI_Bcast(buf, count, dt, root, comm);
}

int MPI_Reduce(const void* sb, void* rb, int count, MPI_Datatype dt, MPI_Op op, int root, MPI_Comm comm) {
  record(comm);
  return PMPI_Reduce(sb, rb, count, dt, op, root, comm);
}

int MPI_Allreduce(const void* sb, void* rb, int count, MPI_Datatype dt, MPI_Op op, MPI_Comm comm) {
  record(comm);
  return PMPI_Allreduce(sb, rb, count, dt, op, comm);
}

int MPI_Iallreduce(const void* sb, void* rb, int count, MPI_Datatype dt, MPI_Op op, MPI_Comm comm, MPI_Request* req) {
  record(comm);
  return PMPI_Iallreduce(sb, rb, count, dt, op, comm, req);
}

int MPI_Exscan(const void* sb, void* rb, int count, MPI_Datatype dt, MPI_Op op, MPI_Comm comm) {
  record(comm);
  return PMPI_Exscan(sb, rb, count, dt, op, comm);
}

int MPI_Scan(const void* sb, void* rb, int count, MPI_Datatype dt, MPI_Op op, MPI_Comm comm) {
  record(comm);
  return PMPI_Scan(sb, rb, count, dt, op, comm);
}

int MPI_Gather(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, int root, MPI_Comm comm) {
  record(comm);
  return PMPI_Gather(sb, sc, st, rb, rc, rt, root, comm);
}

int MPI_Gatherv(const void* sb, int sc, MPI_Datatype st, void* rb, const int rc[], const int displs[], MPI_Datatype rt, int root, MPI_Comm comm) {
  record(comm);
  return PMPI_Gatherv(sb, sc, st, rb, rc, displs, rt, root, comm);
}

int MPI_Allgather(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, MPI_Comm comm) {
  record(comm);
  return PMPI_Allgather(sb, sc, st, rb, rc, rt, comm);
}

int MPI_Allgatherv(const void* sb, int sc, MPI_Datatype st, void* rb, const int rc[], const int displs[], MPI_Datatype rt, MPI_Comm comm) {
  record(comm);
  return PMPI_Allgatherv(sb, sc, st, rb, rc, displs, rt, comm);
}

int MPI_Scatter(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, int root, MPI_Comm comm) {
  record(comm);
  return PMPI_Scatter(sb, sc, st, rb, rc, rt, root, comm);
}

int MPI_Scatterv(const void* sb, const int sc[], const int displs[], MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, int root, MPI_Comm comm) {
  record(comm);
  return PMPI_Scatterv(sb, sc, displs, st, rb, rc, rt, root, comm);
}

int MPI_Alltoall(const void* sb, int sc, MPI_Datatype st, void* rb, int rc, MPI_Datatype rt, MPI_Comm comm) {
  record(comm);
  return PMPI_Alltoall(sb, sc, st, rb, rc, rt, comm);
}

int MPI_Alltoallv(const void* sb, const int sc[], const int sd[], MPI_Datatype st, void* rb, const int rc[], const int rd[], MPI_Datatype rt, MPI_Comm comm) {
  record(comm);
  return PMPI_Alltoallv(sb, sc, sd, st, rb, rc, rd, rt, comm);
}

int MPI_Reduce_scatter_block(const void* sb, void* rb, int count, MPI_Datatype dt, MPI_Op op, MPI_Comm comm) {
  record(comm);
  return PMPI_Reduce_scatter_block(sb, rb, count, dt, op, comm);
}

int MPI_Comm_split(MPI_Comm comm, int color, int key, MPI_Comm* out) {
  record(comm);
  return PMPI_Comm_split(comm, color, key, out);
}

int MPI_Comm_dup(MPI_Comm comm, MPI_Comm* out) {
  record(comm);
  return PMPI_Comm_dup(comm, out);
}

}  // extern "C"
