#include "tools/nwfqd/gate.h"

namespace nwfq::nwfqd {

void Gate::Register() {
  std::lock_guard<std::mutex> lock(mu_);
  ++workers_;
}

void Gate::Unregister() {
  std::lock_guard<std::mutex> lock(mu_);
  --workers_;
  cv_.notify_all();
}

void Gate::Park() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!pending_.load(std::memory_order_relaxed)) return;
  const uint64_t gen = generation_;
  ++parked_;
  cv_.notify_all();
  cv_.wait(lock, [&] { return generation_ != gen; });
  --parked_;
  cv_.notify_all();  // the next Run waits for every worker of this one to leave
}

void Gate::Run(absl::FunctionRef<void()> fn) {
  std::lock_guard<std::mutex> serial(run_mu_);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return parked_ == 0; });  // workers released by the last Run are out
  pending_.store(true, std::memory_order_release);
  cv_.wait(lock, [&] { return parked_ >= workers_; });
  fn();  // every worker is parked (or gone): nobody decides packets now
  pending_.store(false, std::memory_order_release);
  ++generation_;
  cv_.notify_all();
}

}  // namespace nwfq::nwfqd
