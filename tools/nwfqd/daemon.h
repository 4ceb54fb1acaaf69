// nwfqd's life cycle and control plane.
//
//   start:   load + instantiate + compile the policy (policy.h) -> Engine::SetBinding per
//            binding -> open the NFQUEUE queue(s) -> install steering (steering.h) ->
//            control socket, metrics -> drop capabilities -> sd_notify READY=1
//   run:     one worker thread per queue: ProcessBatch -> PacketHandler (handler.h) ->
//            verdicts; Gate::Checkpoint() between batches (gate.h)
//   control: ControlServer threads (control.h) run requests (commands.cc); SIGHUP and
//            `reload` run Reload() on the calling (non-worker) thread
//   stop:    control and metrics stop -> workers stop -> steering removed -> what is
//            still queued is decided -> counters to stderr
//
// Thread-safety contract towards the packet workers (the engine's contract, engine.h, plus
// the gate):
//   * Engine::SetBinding/RemoveBinding and TimeoutPolicy::Set run directly on control
//     threads (the engine swaps programs atomically; timeouts are atomics).
//   * Everything the workers own or write without synchronisation (conntrack tables, rule
//     counters, handler and queue counters, the handlers' policy snapshot) is read or
//     changed only inside Gate::Run, i.e. with every worker parked between two batches.
//   * Reloads are serialised by reload_mu_, which also keeps the policy snapshot and the
//     engine's programs consistent for `counters`.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "engine/nfqueue/nfqueue.h"
#include "tools/nwfqd/config.h"
#include "tools/nwfqd/control.h"
#include "tools/nwfqd/gate.h"
#include "tools/nwfqd/handler.h"
#include "tools/nwfqd/policy.h"
#include "tools/nwfqd/steering.h"
#include "tools/nwfqd/trace.h"

namespace nwfq::nwfqd {

class MetricsServer;
class Rejecter;

// Everything the workers own, copied with the workers paused (for status and metrics).
struct Snapshot {
  struct Queue {
    uint16_t num = 0;
    nfq::Counters counters;
    bool kernel_ok = false;
    nfq::KernelQueueStats kernel;
  };
  struct Binding {
    std::string portdev;
    uint32_t entries = 0;
    uint32_t capacity = 0;
    ct::TableStats stats;
    std::vector<engine::RuleCounter> rules;
  };
  HandlerStats handler;
  engine::EngineCounters engine;
  std::vector<Queue> queues;
  std::vector<Binding> bindings;
  std::shared_ptr<const Policy> policy;  // the one the rule indices refer to
};

class Daemon {
 public:
  explicit Daemon(Config config);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Starts, serves until `stop` becomes true, shuts down cleanly. `reload` is set by the
  // SIGHUP handler; Run() clears it and reloads. Errors before serving are returned with
  // nothing left installed.
  absl::Status Run(const std::atomic<bool>& stop, std::atomic<bool>& reload);

  // Control plane (any thread except a worker). Reload: on success a summary; on error
  // the reasons (file:line each), and the old policy stays in force.
  absl::StatusOr<std::string> Reload(absl::string_view why);
  // Serves one control request (commands.cc).
  void Handle(const std::vector<std::string>& args, Reply& reply);
  Snapshot TakeSnapshot();
  std::string StatusText();
  std::string MetricsText();  // Prometheus text format (metrics.cc)

 private:
  struct Worker {
    uint16_t queue_num = 0;
    std::unique_ptr<nfq::Queue> queue;
    std::unique_ptr<PacketHandler> handler;
    std::thread thread;
    std::vector<std::pair<uint32_t, nfq::Verdict>> releases;  // SendReleased scratch
  };

  absl::Status Start();
  absl::Status ApplySteering(const std::vector<std::string>& portdevs);
  void WorkerLoop(Worker& w);
  void SendReleased(Worker& w);
  // Removes expired connections a little at a time (Engine::Maintain), at most every 50 ms.
  void SweepExpired(const ct::Clock& clock, ct::Nanos& next_sweep);
  void Shutdown();
  std::vector<std::string> Portdevs() const;  // of policy_

  // commands.cc
  void HandleConntrack(const std::vector<std::string>& args, Reply& reply);
  void HandleTimeout(const std::vector<std::string>& args, Reply& reply);
  void HandleCounters(const std::vector<std::string>& args, Reply& reply);
  void HandleTrace(const std::vector<std::string>& args, Reply& reply);

  Config config_;
  engine::Engine engine_;
  Gate gate_;
  Tracer tracer_;
  std::mutex reload_mu_;
  std::shared_ptr<const Policy> policy_;  // guarded by reload_mu_
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> workers_stop_{false};
  std::atomic<bool> failed_{false};
  std::mutex failure_mu_;
  absl::Status failure_;  // guarded by failure_mu_: why a worker stopped
  steer::Backend backend_ = steer::Backend::kNone;
  bool steering_installed_ = false;
  // Data plane: reject replies (reject.h) and the layer-2 offload (l2_offload.h).
  std::unique_ptr<Rejecter> rejecter_;
  std::mutex decide_mu_;  // serialises Engine::Decide across workers (see Start)
  ReleaseRouter router_;  // held fragments' verdicts, per queue (handler.h)
  std::vector<engine::Released> sweep_released_;
  bool l2_installed_ = false;
  std::vector<std::string> l2_offloaded_;  // portdevs whose layer 2 is in ebtables
  std::string steer_detail_;
  std::unique_ptr<ControlServer> control_;
  std::unique_ptr<MetricsServer> metrics_;
  absl::Time started_ = absl::Now();
  std::atomic<uint64_t> reloads_ok_{0}, reloads_failed_{0};
  std::string last_reload_;  // guarded by reload_mu_: outcome of the last reload
};

// Convenience for main(): Daemon(config).Run(stop, reload).
absl::Status Run(const Config& config, const std::atomic<bool>& stop, std::atomic<bool>& reload);

}  // namespace nwfq::nwfqd
