// Pool: where a Call goes to run on a worker, as the stages in front of the pool see it (the
// RequestPipeline). WorkerPool is the implementation; the interface exists so the pipeline's
// own decisions (prompt cache, deduplication, coalescing) are unit-tested against a pool that
// answers calls by hand, with no worker processes. Supervisor thread only, like WorkerPool.
#pragma once

#include <memory>

#include "supervisor/pool/call.hpp"

namespace drover::supervisor {

class Pool {
 public:
  // Queues a call for the next suitable worker; the pool finishes it exactly once (result,
  // error or cancelled). REQUIRES: call->state() == queued.
  virtual void submit(std::shared_ptr<Call> call) = 0;
  // Cancels a call wherever it is: removed from the queue (finished as cancelled unless it
  // already ended), or a cancel sent to the worker holding it (which then answers it).
  virtual void cancel(const std::shared_ptr<Call>& call) = 0;
  // A call's deadline passed while a worker held it: counts against that worker's breaker,
  // then cancels it.
  virtual void on_timeout(const std::shared_ptr<Call>& call) = 0;

 protected:
  // Not owned through this interface: the Supervisor owns the WorkerPool, the pipeline holds
  // a reference.
  ~Pool() = default;
};

}  // namespace drover::supervisor
