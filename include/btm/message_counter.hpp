#pragma once
// Counts point-to-point and collective MPI calls per communicator by intercepting the
// PMPI profiling interface. Tests use it to prove which communicators carried traffic
// (e.g. that expert training never leaves the group communicator).
#include <mpi.h>

#include <cstdint>

namespace btm::message_counter {

// Starts (or restarts) counting from zero; counting is off until this is called.
void start();
void stop();
// Calls made on communicators congruent to `comm` (MPI_Comm_compare IDENT or CONGRUENT).
std::uint64_t calls_on(MPI_Comm comm);
// Calls made on any communicator other than those congruent to `comm`.
std::uint64_t calls_not_on(MPI_Comm comm);
std::uint64_t total_calls();

}  // namespace btm::message_counter
