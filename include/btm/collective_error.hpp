#pragma once
// Errors that every rank of a communicator agrees on. A group of ranks that trains one
// model may recover from a failure (mark the model failed, go on with the next) only when
// all its ranks take that path together: a rank that failed alone while the others wait
// in the next collective would hang the group (ARCHITECTURE, Errors and bad input).
#include <functional>
#include <string>

#include "btm/comm.hpp"
#include "btm/error.hpp"

namespace btm {

// Thrown on every rank of a communicator at once, with the same message.
class CollectiveError : public Error {
 public:
  explicit CollectiveError(const std::string& message) : Error(message) {}
};

// A phase finished, but some of its models failed (each recorded; the rest are done).
// Thrown on every world rank together: the run ends with exit status 3, without MPI_Abort.
class ModelsFailed : public CollectiveError {
 public:
  explicit ModelsFailed(const std::string& message) : CollectiveError(message) {}
};

// Runs `work` on every rank of `comm`, then agrees (one allgather): when it threw on any
// rank, every rank throws CollectiveError with the message of the lowest failing rank. Every
// rank must call it; `work` must not start a collective that a failing rank could skip.
void agree_on_failure(const Comm& comm, const std::function<void()>& work);

}  // namespace btm
