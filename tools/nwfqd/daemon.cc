#include "tools/nwfqd/daemon.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "conntrack/clock.h"
#include "engine/compiler.h"
#include "tools/nwfqd/l2_offload.h"
#include "tools/nwfqd/metrics.h"
#include "tools/nwfqd/reject.h"
#include "tools/nwfqd/service.h"

namespace nwfq::nwfqd {
namespace {

engine::EngineOptions EngineOptionsFor(const Config& c) {
  engine::EngineOptions o;
  o.conntrack_capacity = c.conntrack_size;
  o.connlimit.idle_limit_seconds = c.connlimit_idle_seconds;
  o.malformed_verdict = c.malformed_accept ? engine::Verdict::kAccept : engine::Verdict::kDrop;
  return o;
}

// Multi-line text to stderr, one "nwfqd: " line each (the journal keeps lines apart).
void LogLines(absl::string_view prefix, absl::string_view text) {
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::fprintf(stderr, "nwfqd: %.*s%.*s\n", static_cast<int>(prefix.size()), prefix.data(),
                 static_cast<int>(line.size()), line.data());
  }
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

void Announce(const InstantiatedBinding& b, const l2::Plan& l2_plan) {
  for (const Warning& w : b.warnings) {
    std::fprintf(stderr, "nwfqd: warning: %s:%d (%s): %s\n", w.origin.file.c_str(), w.origin.line,
                 w.origin.filter.c_str(), w.message.c_str());
  }
  // Never silently ignore a rule: the kernel here queues only IP packets (iptables), so
  // layer-2 rules are either offloaded to ebtables (l2_offload.h) or listed as not
  // enforced for non-IP frames (the engine still applies them to the IP packets it sees).
  const std::vector<std::string> l2_rules = l2::DescribeL2Rules(b);
  if (Contains(l2_plan.offloaded, b.portdev)) {
    std::fprintf(stderr,
                 "nwfqd: binding %s: layer 2 offloaded to the kernel's bridge filtering "
                 "(%zu rule(s), ebtables nat chains NWFQ-I-%s / NWFQ-O-%s)\n",
                 b.portdev.c_str(), l2_rules.size(), b.portdev.c_str(), b.portdev.c_str());
  } else if (!l2_rules.empty()) {
    for (const std::string& why : l2_plan.not_offloaded) {
      if (absl::StartsWith(why, b.portdev + ": "))
        std::fprintf(stderr, "nwfqd: warning: no layer-2 offload for %s\n", why.c_str());
    }
    std::fprintf(stderr,
                 "nwfqd: warning: binding %s: %zu layer-2 rule(s) not enforced for non-IP "
                 "frames (ARP, RARP, VLAN, STP, ...: this kernel cannot queue them); they "
                 "apply to IP packets only:\n",
                 b.portdev.c_str(), l2_rules.size());
    for (const std::string& r : l2_rules) std::fprintf(stderr, "nwfqd:   %s\n", r.c_str());
  }
  std::fprintf(stderr, "nwfqd: binding %s: filter %s, %zu rules\n", b.portdev.c_str(),
               b.top_filter.c_str(), b.rules.size());
}

}  // namespace

Daemon::Daemon(Config config) : config_(std::move(config)), engine_(EngineOptionsFor(config_)) {}

Daemon::~Daemon() { Shutdown(); }

std::vector<std::string> Daemon::Portdevs() const {
  std::vector<std::string> out;
  for (const auto& [dev, b] : policy_->bindings) out.push_back(dev);
  return out;
}

absl::Status Daemon::ApplySteering(const std::vector<std::string>& portdevs) {
  if (backend_ == steer::Backend::kNone) return absl::OkStatus();
  // At start Install() replaces whatever a crashed run left (remove, then one
  // iptables-restore per family); on reload Update() refills the chains in place, so the
  // other taps stay steered throughout.
  steer::Options o{portdevs, config_.queues.front(), config_.fail_open};
  o.queue_count = static_cast<uint16_t>(config_.queues.size());
  absl::Status st = steering_installed_ ? steer::Update(backend_, o) : steer::Install(backend_, o);
  if (st.ok()) steering_installed_ = true;
  return st;
}

absl::Status Daemon::Start() {
  absl::StatusOr<std::shared_ptr<const Policy>> policy =
      LoadPolicy(config_.filters_dir, config_.bindings_dir, config_.binding_files);
  if (!policy.ok()) return policy.status();
  for (const auto& [name, seconds] : config_.timeouts) {
    if (absl::Status st = engine_.timeouts().Set(name, seconds); !st.ok()) return st;
  }
  l2::Plan l2_plan;
  if (config_.l2_offload) {
    std::vector<InstantiatedBinding> all;
    for (const auto& [dev, b] : (*policy)->bindings) all.push_back(b);
    l2_plan = l2::BuildPlan(all);
  }
  for (const auto& [dev, b] : (*policy)->bindings) {
    Announce(b, l2_plan);
    // Offloaded: the kernel applies the layer-2 rules to the real frame; the engine must
    // not apply its approximation again (l2_offload.h).
    absl::Status st = engine_.SetBinding(Contains(l2_plan.offloaded, dev) ? l2::WithoutL2(b) : b);
    if (!st.ok()) return st;
  }
  l2_offloaded_ = l2_plan.offloaded;
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    policy_ = *policy;
  }

  // Several queues: one worker each, fanned out by the steering rules' --queue-balance,
  // i.e. the kernel's nfqueue hash (jhash of the ordered address pair + protocol): both
  // directions of a flow reach the same queue, but one binding's flows spread over all
  // queues, and connlimit counts across flows. The engine keeps one conntrack table per
  // binding and process-wide counters that assume one deciding thread, so the workers
  // share it under one lock (decide_mu_): receive, parse-for-log, reject replies and
  // verdict writes run in parallel, Decide is serialised. --queue-balance needs a range.
  if (config_.queues.back() - config_.queues.front() + 1u != config_.queues.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--queues ", absl::StrJoin(config_.queues, ","),
                     ": the steering fans out over a contiguous range (e.g. 0-3)"));
  }

  // Steering backend first (cheap checks), then the queue, then the rules: packets are
  // steered only once someone listens.
  steer::Detection detection;
  if (config_.steer != "none") detection = steer::Detect();
  absl::StatusOr<steer::Backend> backend = steer::Choose(config_.steer, detection);
  if (!backend.ok()) return backend.status();
  backend_ = *backend;
  steer_detail_ = detection.detail.empty() ? "by the operator" : detection.detail;

  absl::StatusOr<std::unique_ptr<Rejecter>> rejecter =
      Rejecter::Open(config_.reject_tcp_with == "rst" ? TcpReject::kRst : TcpReject::kIcmp);
  if (rejecter.ok()) {
    rejecter_ = *std::move(rejecter);
  } else {
    std::fprintf(stderr, "nwfqd: warning: reject rules will drop silently: %s\n",
                 std::string(rejecter.status().message()).c_str());
  }
  HandlerOptions hopt{.log_verdicts = config_.log_verdicts,
                      .log_rate = config_.log_rate,
                      .rejecter = rejecter_.get(),
                      .decide_mu = config_.queues.size() > 1 ? &decide_mu_ : nullptr,
                      .router = &router_};
  for (uint16_t q : config_.queues) {
    nfq::QueueOptions qopt;
    qopt.queue_num = q;
    qopt.fail_open = config_.fail_open;
    qopt.copy_range = config_.copy_range;
    qopt.batch = config_.batch;
    qopt.max_len = config_.queue_maxlen;
    absl::StatusOr<std::unique_ptr<nfq::Queue>> queue = nfq::Queue::Open(qopt);
    if (!queue.ok()) return queue.status();
    auto w = std::make_unique<Worker>();
    w->queue_num = q;
    w->queue = *std::move(queue);
    HandlerOptions wopt = hopt;
    wopt.queue_num = q;
    w->handler = std::make_unique<PacketHandler>(wopt, engine_, tracer_, policy_);
    workers_.push_back(std::move(w));
  }

  // Install() removes stale chains of a crashed run first.
  if (absl::Status st = ApplySteering(Portdevs()); !st.ok()) return st;
  // Layer-2 offload (also removes the ebtables chains of a crashed run).
  if (absl::Status st = l2::Install(l2_plan); !st.ok()) return st;
  l2_installed_ = true;

  if (config_.has_control()) {
    absl::StatusOr<std::unique_ptr<ControlServer>> c = ControlServer::Open(config_.control_path);
    if (!c.ok()) return c.status();
    control_ = *std::move(c);
  }
  if (!config_.metrics_addr.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> m = MetricsServer::Open(config_.metrics_addr);
    if (!m.ok()) return m.status();
    metrics_ = *std::move(m);
  }
  if (config_.drop_capabilities) {
    if (absl::Status st = DropCapabilities(); !st.ok()) return st;
  }
  for (auto& w : workers_) {
    Worker* wp = w.get();
    w->thread = std::thread([this, wp] { WorkerLoop(*wp); });
  }
  if (control_) {
    control_->Start([this](const std::vector<std::string>& args, Reply& r) { Handle(args, r); },
                    nullptr);
  }
  if (metrics_) metrics_->Start([this] { return MetricsText(); });
  return absl::OkStatus();
}

void Daemon::WorkerLoop(Worker& w) {
  GateMember member(gate_);
  const ct::MonotonicClock clock;
  ct::Nanos next_sweep = 0;
  while (!workers_stop_.load(std::memory_order_relaxed)) {
    gate_.Checkpoint();
    absl::StatusOr<int> n =
        w.queue->ProcessBatch(100, [&](const nfq::Packet& p) { return w.handler->Handle(p); });
    if (!n.ok()) {
      std::lock_guard<std::mutex> lock(failure_mu_);
      failure_ = absl::Status(n.status().code(),
                              absl::StrCat("queue ", w.queue_num, ": ", n.status().message()));
      failed_.store(true);
      return;
    }
    if (&w == workers_.front().get()) SweepExpired(clock, next_sweep);
    SendReleased(w);
  }
}

// Verdicts of this worker's held fragments settled since its last batch (by this worker,
// another one, or the sweep).
void Daemon::SendReleased(Worker& w) {
  router_.Take(w.queue_num, &w.releases);
  for (const auto& [id, v] : w.releases) w.queue->Release(id, v);
  w.queue->FlushVerdicts();
}

void Daemon::SweepExpired(const ct::Clock& clock, ct::Nanos& next_sweep) {
  // Expiry on lookup already keeps verdicts right; this sweep makes expired connections
  // leave `conntrack list` and the table size while their flows are silent. A few thousand
  // slots every 50 ms walks a default 262,144-slot table in about 3 s, at ~1 ns a slot.
  constexpr ct::Nanos kSweepInterval = 50 * ct::kNanosPerSecond / 1000;
  constexpr size_t kSlotsPerSweep = 4096;
  const ct::Nanos now = clock.Now();
  if (now < next_sweep) return;
  next_sweep = now + kSweepInterval;
  // Same rule as Decide: one thread in the tables at a time (see Start for decide_mu_).
  std::lock_guard<std::mutex> lock(decide_mu_);
  engine_.Maintain(now, kSlotsPerSweep);  // also the fragments' reassembly timers
  RouteReleased(engine_, router_, sweep_released_, nullptr);
}

absl::Status Daemon::Run(const std::atomic<bool>& stop, std::atomic<bool>& reload) {
  if (absl::Status st = Start(); !st.ok()) {
    Shutdown();
    return st;
  }
  std::fprintf(stderr, "nwfqd: ready: queue%s %s, bindings %s, steering %s (%s), %s%s%s%s\n",
               config_.queues.size() > 1 ? "s" : "", absl::StrJoin(config_.queues, ",").c_str(),
               absl::StrJoin(Portdevs(), ",").c_str(), steer::BackendName(backend_),
               steer_detail_.c_str(), config_.fail_open ? "fail-open" : "fail-closed",
               control_ ? absl::StrCat(", control ", config_.control_path).c_str() : "",
               metrics_ ? absl::StrCat(", metrics port ", metrics_->port()).c_str() : "",
               config_.drop_capabilities ? ", capabilities: net_admin,net_raw" : "");
  SdNotify(absl::StrCat("READY=1\nSTATUS=filtering ", Portdevs().size(), " binding(s)"));

  while (!stop.load() && !failed_.load()) {
    if (reload.exchange(false)) {
      absl::StatusOr<std::string> r = Reload("SIGHUP");
      (void)r;  // Reload() logs its outcome
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  SdNotify("STOPPING=1");
  Shutdown();
  std::lock_guard<std::mutex> lock(failure_mu_);
  return failure_;
}

void Daemon::Shutdown() {
  if (control_) control_->Stop();
  if (metrics_) metrics_->Stop();
  tracer_.End();
  workers_stop_.store(true);
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  // Stop steering new packets, decide what is already queued, then unbind (Queue dtor).
  if (steering_installed_) {
    absl::Status removed = steer::Remove(backend_);
    if (!removed.ok()) {
      std::fprintf(stderr, "nwfqd: removing steering: %s\n", removed.ToString().c_str());
      std::lock_guard<std::mutex> lock(failure_mu_);
      if (failure_.ok()) failure_ = removed;
    }
    steering_installed_ = false;
  }
  if (l2_installed_) {
    if (absl::Status st = l2::Remove(); !st.ok()) {
      std::fprintf(stderr, "nwfqd: removing layer-2 offload: %s\n", st.ToString().c_str());
      std::lock_guard<std::mutex> lock(failure_mu_);
      if (failure_.ok()) failure_ = st;
    }
    l2_installed_ = false;
  }
  for (auto& w : workers_) {
    for (int i = 0; i < 100; ++i) {
      absl::StatusOr<int> n =
          w->queue->ProcessBatch(0, [&](const nfq::Packet& p) { return w->handler->Handle(p); });
      if (!n.ok() || *n == 0) break;
    }
  }
  // Fragments still held (their datagrams incomplete) get the fail policy's verdict, so
  // no queue entry is left behind: accept when fail-open, else drop.
  if (!workers_.empty()) {
    engine_.FlushFragments(engine::FragDrop::kIncomplete);
    std::vector<engine::Released> rest;
    engine_.TakeReleased(&rest);
    for (const engine::Released& r : rest)
      router_.Post(r.token, config_.fail_open ? nfq::Verdict::kAccept : nfq::Verdict::kDrop);
    for (auto& w : workers_) SendReleased(*w);
  }
  if (!workers_.empty()) LogLines("", StatusText());
  workers_.clear();
  control_.reset();
  metrics_.reset();
}

absl::StatusOr<std::string> Daemon::Reload(absl::string_view why) {
  std::lock_guard<std::mutex> lock(reload_mu_);
  SdNotify("RELOADING=1");
  auto fail = [&](const absl::Status& st) -> absl::Status {
    reloads_failed_.fetch_add(1);
    last_reload_ = absl::StrCat("failed (", why, "), old policy kept");
    LogLines(absl::StrCat("reload (", why, ") refused, old policy kept: "), st.message());
    SdNotify("READY=1");
    return st;
  };
  // 1. Parse, instantiate, compile: all off the hot path, nothing changes yet.
  absl::StatusOr<std::shared_ptr<const Policy>> loaded =
      LoadPolicy(config_.filters_dir, config_.bindings_dir, config_.binding_files);
  if (!loaded.ok()) return fail(loaded.status());
  const Policy& next = **loaded;
  std::vector<const InstantiatedBinding*> changed;
  std::vector<std::string> added, removed, errors;
  size_t unchanged = 0;
  for (const auto& [dev, b] : next.bindings) {
    auto old = policy_->fingerprints.find(dev);
    if (old != policy_->fingerprints.end() && old->second == next.fingerprints.at(dev)) {
      ++unchanged;  // same program: keep it, with its counters and connlimit state
      continue;
    }
    if (old == policy_->fingerprints.end()) added.push_back(dev);
    absl::StatusOr<std::shared_ptr<const engine::Program>> prog = engine::Compile(b);
    if (!prog.ok()) {
      errors.push_back(absl::StrCat("binding ", dev, ": ", prog.status().message()));
      continue;
    }
    changed.push_back(&b);
  }
  for (const auto& [dev, b] : policy_->bindings) {
    if (next.bindings.count(dev) == 0) removed.push_back(dev);
  }
  if (!errors.empty()) return fail(absl::InvalidArgumentError(absl::StrJoin(errors, "\n")));

  l2::Plan l2_plan;
  if (config_.l2_offload) {
    std::vector<InstantiatedBinding> all;
    for (const auto& [dev, b] : next.bindings) all.push_back(b);
    l2_plan = l2::BuildPlan(all);
  }

  // 2. Swap. Programs first (the engine swaps each atomically; connection tables and
  // per-binding timeouts stay), then the workers' snapshot with the workers paused.
  for (const InstantiatedBinding* b : changed) {
    Announce(*b, l2_plan);
    if (absl::Status st =
            engine_.SetBinding(Contains(l2_plan.offloaded, b->portdev) ? l2::WithoutL2(*b) : *b);
        !st.ok()) {
      // Cannot happen after the Compile above; if it does, say so (a partial reload).
      return fail(st);
    }
  }
  gate_.Run([&] {
    for (auto& w : workers_) w->handler->SetPolicy(*loaded);
  });
  for (const std::string& dev : removed) engine_.RemoveBinding(dev);
  const bool devices_changed = !added.empty() || !removed.empty();
  policy_ = *loaded;
  if (l2_installed_ && (!changed.empty() || devices_changed)) {
    // Rebuilt as a whole (a short window without layer-2 rules: ebtables-restore cannot
    // swap chains atomically in place).
    if (absl::Status st = l2::Install(l2_plan); !st.ok()) {
      LogLines("reload: layer-2 offload update failed: ", st.message());
    }
    l2_offloaded_ = l2_plan.offloaded;
  }
  if (devices_changed) {
    if (absl::Status st = ApplySteering(Portdevs()); !st.ok()) {
      LogLines("reload: steering update failed: ", st.message());
    }
  }
  reloads_ok_.fetch_add(1);
  const std::string summary =
      absl::StrCat("reloaded (", why, "): ", next.bindings.size(), " binding(s): ", added.size(),
                   " added, ", changed.size() - added.size(), " changed, ", unchanged,
                   " unchanged, ", removed.size(), " removed");
  last_reload_ = summary;
  LogLines("", summary);
  SdNotify(absl::StrCat("READY=1\nSTATUS=filtering ", next.bindings.size(), " binding(s)"));
  return summary;
}

Snapshot Daemon::TakeSnapshot() {
  std::lock_guard<std::mutex> lock(reload_mu_);
  Snapshot s;
  s.policy = policy_;
  gate_.Run([&] {
    s.engine = engine_.counters();
    for (auto& w : workers_) {
      s.handler.Add(w->handler->stats());
      Snapshot::Queue q;
      q.num = w->queue_num;
      q.counters = w->queue->counters();
      s.queues.push_back(q);
    }
    for (const auto& [dev, b] : policy_->bindings) {
      Snapshot::Binding sb;
      sb.portdev = dev;
      if (const ct::Table* t = engine_.conntrack_table(dev); t != nullptr) {
        sb.entries = t->size();
        sb.capacity = t->capacity();
        sb.stats = t->stats();
      }
      sb.rules = engine_.rule_counters(dev);
      s.bindings.push_back(std::move(sb));
    }
  });
  for (Snapshot::Queue& q : s.queues) {  // a file read: outside the gate
    absl::StatusOr<nfq::KernelQueueStats> ks = nfq::ReadKernelQueueStats(q.num);
    q.kernel_ok = ks.ok();
    if (ks.ok()) q.kernel = *ks;
  }
  return s;
}

std::string Daemon::StatusText() {
  const Snapshot s = TakeSnapshot();
  std::string out = absl::StrCat(
      "nwfqd ", config_.fail_open ? "fail-open" : "fail-closed", ", steering ",
      steer::BackendName(backend_), ", up ",
      absl::FormatDuration(absl::Trunc(absl::Now() - started_, absl::Seconds(1))), ", reloads ",
      reloads_ok_.load(), " ok / ", reloads_failed_.load(), " refused\n");
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    if (!last_reload_.empty()) absl::StrAppend(&out, "last reload: ", last_reload_, "\n");
    absl::StrAppend(&out, "layer 2 offloaded: ",
                    l2_offloaded_.empty() ? "none" : absl::StrJoin(l2_offloaded_, ","), "\n");
  }
  for (const Snapshot::Queue& q : s.queues) {
    const nfq::Counters& c = q.counters;
    absl::StrAppend(&out, "queue ", q.num, ": packets ", c.packets, " (accepted ", c.accepted,
                    ", dropped ", c.dropped, ") in ", c.batches, " batches; truncated ",
                    c.truncated, ", bad messages ", c.bad_messages, ", enobufs ", c.enobufs,
                    ", receive errors ", c.recv_errors, ", verdict send errors ", c.send_errors,
                    "\n");
    if (q.kernel_ok) {
      absl::StrAppend(&out, "kernel queue ", q.num, ": waiting ", q.kernel.waiting,
                      ", queue-full drops ", q.kernel.queue_dropped, ", socket overrun drops ",
                      q.kernel.user_dropped, "\n");
    }
  }
  if (rejecter_) {
    const RejectCounters& r = rejecter_->counters();
    absl::StrAppend(&out, "reject: rst ", r.rst.load(), ", icmp ", r.icmp.load(), ", not answered ",
                    r.suppressed.load(), ", send errors ", r.send_errors.load(), " (tcp gets ",
                    rejecter_->tcp() == TcpReject::kRst ? "rst" : "icmp", ")\n");
  }
  for (const Snapshot::Binding& b : s.bindings) {
    auto inst = s.policy->bindings.find(b.portdev);
    absl::StrAppend(&out, "binding ", b.portdev, ": filter ",
                    inst != s.policy->bindings.end() ? inst->second.top_filter : "?", ", ",
                    inst != s.policy->bindings.end() ? inst->second.rules.size() : 0,
                    " rules, conntrack ", b.entries, "/", b.capacity, "\n");
  }
  absl::StrAppend(&out, "decisions (accept/drop/reject):");
  for (engine::View v : {engine::View::kFromVm, engine::View::kToVm, engine::View::kVmToHost}) {
    const auto& d = s.handler.decisions[static_cast<int>(v)];
    absl::StrAppend(&out, " ", ViewName(v), " ", d[0], "/", d[1], "/", d[2]);
  }
  const auto& r = s.handler.by_reason;
  absl::StrAppend(
      &out, "\nreasons: rule ", r[0], ", fell-off ", r[1], ", no-binding ", r[2], ", malformed ",
      r[3], ", fragment ", r[4], "; not ours ", s.handler.not_ours, "\nfragments: held ",
      s.engine.fragments_held, ", datagrams reassembled ", s.engine.datagrams_reassembled,
      ", dropped ",
      [&] {
        uint64_t n = 0;
        for (uint64_t c : s.engine.frag_dropped) n += c;
        return n;
      }(),
      "\n");
  return out;
}

absl::Status Run(const Config& config, const std::atomic<bool>& stop, std::atomic<bool>& reload) {
  Daemon daemon(config);
  return daemon.Run(stop, reload);
}

}  // namespace nwfq::nwfqd
