// The pause gate: how nwfqd's control plane touches state that belongs to the packet
// workers (conntrack tables, rule and worker counters, the worker's policy snapshot)
// without a lock on the packet path.
//
// Workers call Checkpoint() between batches (one relaxed atomic load when nobody waits).
// A control-side Run(fn) raises a flag, waits until every registered worker is parked at
// its checkpoint, runs fn on the calling thread while they wait, then releases them. So
// fn sees a quiescent engine: no Decide() runs anywhere. Workers poll with a timeout
// (100 ms), so an idle worker reaches its checkpoint within that; Run() is meant for
// rare, short work (a listing, a flush, a pointer swap), never for compiling.
//
// Thread-safety: Register/Unregister/Checkpoint from worker threads; Run from any other
// thread (calls are serialised). A worker must not call Run. With no registered worker
// Run() just runs fn.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>

#include "absl/functional/function_ref.h"

namespace nwfq::nwfqd {

class Gate {
 public:
  void Register();
  void Unregister();  // a worker that leaves; wakes a waiting Run()

  void Checkpoint() {
    if (pending_.load(std::memory_order_acquire)) Park();
  }

  void Run(absl::FunctionRef<void()> fn);

 private:
  void Park();

  std::atomic<bool> pending_{false};
  std::mutex run_mu_;  // one Run at a time
  std::mutex mu_;
  std::condition_variable cv_;
  int workers_ = 0;          // guarded by mu_
  int parked_ = 0;           // guarded by mu_
  uint64_t generation_ = 0;  // guarded by mu_; bumped when a Run releases the workers
};

// RAII registration of the calling worker thread.
class GateMember {
 public:
  explicit GateMember(Gate& gate) : gate_(gate) { gate_.Register(); }
  ~GateMember() { gate_.Unregister(); }
  GateMember(const GateMember&) = delete;
  GateMember& operator=(const GateMember&) = delete;

 private:
  Gate& gate_;
};

}  // namespace nwfq::nwfqd
