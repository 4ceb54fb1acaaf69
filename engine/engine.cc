// The Engine facade: bindings, per-binding conntrack, layer ordering.
//
// Order of the hooks, as on a Linux bridge with br_netfilter (what libvirt relies on):
//  * from the VM (FI / HI): ebtables nat PREROUTING (libvirt-I) runs first; a frame it
//    drops never reaches conntrack. Then conntrack, then iptables FI (FORWARD) or HI (INPUT).
//  * to the VM (FO): the frame entered the bridge elsewhere, so conntrack (PREROUTING of the
//    ingress port) and iptables FO (FORWARD) run before ebtables nat POSTROUTING
//    (libvirt-O); the connection is confirmed only after POSTROUTING, so a frame dropped
//    by libvirt-O leaves no new connection but still updates an existing one.
//  * VLAN-tagged frames bypass iptables (finding i.14): layer 2 only, no conntrack.
//
// Conntrack zones: every binding owns its conntrack table (and timeout policy), so two VMs
// never share connections, without widening the flow key.
#include "engine/engine.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/compiler.h"
#include "engine/evaluator.h"
#include "engine/explain.h"

namespace nwfq::engine {
namespace {

// The first-fragment decisions, direct mapped (a later datagram may evict an earlier one;
// its remaining fragments then get the orphan verdict).
struct FragSlot {
  bool used = false;
  uint8_t family = 0, proto = 0;
  uint32_t id = 0;
  std::array<uint8_t, 16> src{}, dst{};
  ct::Nanos expires = 0;
  Decision decision;
};
constexpr size_t kFragSlots = 256;
constexpr ct::Nanos kFragTimeout = 30 * ct::kNanosPerSecond;  // ipfrag_time

size_t FragHash(const PacketView& v) {
  uint32_t h = v.frag_id * 2654435761u ^ v.l4proto;
  for (int i = 0; i < 16; ++i) h = h * 31 + v.src_ip[i] + 7u * v.dst_ip[i];
  return h % kFragSlots;
}

bool FragKeyEq(const FragSlot& s, const PacketView& v) {
  return s.used && s.family == v.family && s.proto == v.l4proto && s.id == v.frag_id &&
         s.src == v.src_ip && s.dst == v.dst_ip;
}

// A compiled program with the mutable state that belongs to exactly this program:
// per-instruction counters and one connlimit limiter per connlimit rule instance.
struct ProgramState {
  std::shared_ptr<const Program> program;
  std::vector<uint64_t> counters;  // 2 per instruction
  std::vector<ct::ConnLimiter> limiters;
  std::vector<std::string> l2_chain_names;
};

struct BindingState {
  BindingState(const EngineOptions& o, const ct::TimeoutPolicy* root)
      : table(TableOpts(o)), timeouts(root) {}
  static ct::TableOptions TableOpts(const EngineOptions& o) {
    ct::TableOptions t = o.table;
    t.capacity = o.conntrack_capacity;
    return t;
  }
  ct::Table table;
  ct::TimeoutPolicy timeouts;
  std::shared_ptr<ProgramState> prog;  // guarded by Engine::State::mu for the swap
  std::array<FragSlot, kFragSlots> frags{};
};

struct ConnlimitArg {
  ProgramState* ps;
  const ct::FlowFacts* flow;
  const ct::TrackResult* track;
  const ct::Table* table;
  ct::Nanos now;
};

uint32_t CountConnlimit(void* arg, uint32_t id) {
  auto* a = static_cast<ConnlimitArg*>(arg);
  if (id >= a->ps->limiters.size()) return 0;
  return a->ps->limiters[id].Count(*a->flow, *a->track, *a->table, a->now);
}

Verdict L3Verdict(Action a) {
  switch (a) {
    case Action::kDrop:
      return Verdict::kDrop;
    case Action::kReject:
      return Verdict::kReject;
    default:
      return Verdict::kAccept;  // accept, return (= pass)
  }
}

}  // namespace

struct Engine::State {
  explicit State(const EngineOptions& o) : options(o) {}
  EngineOptions options;
  ct::TimeoutPolicy root_timeouts;
  mutable absl::Mutex mu;
  absl::flat_hash_map<std::string, std::shared_ptr<BindingState>> bindings ABSL_GUARDED_BY(mu);
  EngineCounters counters;  // bumped by the deciding thread

  Decision Run(std::string_view portdev, View view, const PacketInput& packet, ct::Nanos now,
               Trace* trace, std::shared_ptr<ProgramState>* used);
};

Engine::Engine(const EngineOptions& options) : state_(std::make_unique<State>(options)) {}
Engine::~Engine() = default;

absl::Status Engine::SetBinding(const InstantiatedBinding& binding) {
  absl::StatusOr<std::shared_ptr<const Program>> prog = Compile(binding);
  if (!prog.ok()) {
    return absl::Status(prog.status().code(),
                        absl::StrCat("binding ", binding.portdev, ": ", prog.status().message()));
  }
  auto ps = std::make_shared<ProgramState>();
  ps->program = *prog;
  ps->counters.assign((*prog)->instrs.size() * 2, 0);
  ps->limiters.reserve((*prog)->connlimiters);
  for (uint32_t i = 0; i < (*prog)->connlimiters; ++i)
    ps->limiters.emplace_back(state_->options.connlimit);
  for (const L2Chain& c : binding.l2_chains) ps->l2_chain_names.push_back(c.name);

  absl::MutexLock lock(&state_->mu);
  auto& slot = state_->bindings[binding.portdev];
  if (slot == nullptr)
    slot = std::make_shared<BindingState>(state_->options, &state_->root_timeouts);
  slot->prog = std::move(ps);
  return absl::OkStatus();
}

void Engine::RemoveBinding(std::string_view portdev) {
  absl::MutexLock lock(&state_->mu);
  state_->bindings.erase(std::string(portdev));
}

ct::TimeoutPolicy& Engine::timeouts() { return state_->root_timeouts; }

ct::TimeoutPolicy* Engine::binding_timeouts(std::string_view portdev) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->bindings.find(absl::string_view(portdev.data(), portdev.size()));
  return it == state_->bindings.end() ? nullptr : &it->second->timeouts;
}

EngineCounters Engine::counters() const { return state_->counters; }

std::vector<RuleCounter> Engine::rule_counters(std::string_view portdev) const {
  std::shared_ptr<ProgramState> ps;
  {
    absl::MutexLock lock(&state_->mu);
    auto it = state_->bindings.find(absl::string_view(portdev.data(), portdev.size()));
    if (it == state_->bindings.end()) return {};
    ps = it->second->prog;
  }
  std::vector<RuleCounter> out;
  const Program& prog = *ps->program;
  static constexpr const char* kNames[] = {"FI", "FO", "HI"};
  for (int c = 0; c < kL3ChainCount; ++c) {
    for (int f = 0; f < 2; ++f) {
      const ChainRange r = prog.l3[c][f];
      for (uint32_t i = r.first; i < r.first + r.count; ++i) {
        out.push_back({prog.instrs[i].rule, absl::StrCat(kNames[c], f ? "6" : ""),
                       ps->counters[2 * i], ps->counters[2 * i + 1]});
      }
    }
  }
  for (int d = 0; d < 2; ++d) {
    for (size_t ci = 0; ci < prog.l2[d].size(); ++ci) {
      const ChainRange r = prog.l2[d][ci];
      for (uint32_t i = r.first; i < r.first + r.count; ++i) {
        if (prog.instrs[i].jump >= 0) continue;
        out.push_back({prog.instrs[i].rule,
                       absl::StrCat(d ? "O:" : "I:",
                                    ci < ps->l2_chain_names.size() ? ps->l2_chain_names[ci] : "?"),
                       ps->counters[2 * i], ps->counters[2 * i + 1]});
      }
    }
  }
  return out;
}

Decision Engine::State::Run(std::string_view portdev, View view, const PacketInput& packet,
                            ct::Nanos now, Trace* trace, std::shared_ptr<ProgramState>* used) {
  ++counters.packets;
  std::shared_ptr<BindingState> b;
  std::shared_ptr<ProgramState> ps;
  {
    absl::ReaderMutexLock lock(&mu);
    auto it = bindings.find(absl::string_view(portdev.data(), portdev.size()));
    if (it != bindings.end()) {
      b = it->second;
      ps = b->prog;
    }
  }
  Decision d;
  if (b == nullptr || ps == nullptr) {
    ++counters.no_binding;
    d.reason = Reason::kNoBinding;
    return d;
  }
  if (used != nullptr) *used = ps;
  const Program& prog = *ps->program;

  ParseOptions popt;
  popt.verify_checksums = options.verify_checksums && !packet.checksum_unverified;
  PacketView v = packet.layer == Layer::kEthernet
                     ? ParseEthernet(packet.bytes, popt)
                     : ParseNetwork(packet.bytes, packet.ethertype, popt);
  if (packet.layer == Layer::kNetwork) {
    // NFQUEUE gives no MAC header: the source MAC comes from NFQA_HWADDR when present; the
    // VM's own MAC stands in for the side we know (documented approximation for L2 rules).
    if (packet.src_mac.has_value()) {
      v.src_mac = *packet.src_mac;
      v.has_src_mac = true;
    } else if (view != View::kToVm) {
      v.src_mac = prog.mac;
      v.has_src_mac = true;
    }
    if (view == View::kToVm) v.dst_mac = prog.mac;
  }
  if (v.malformed != Malformed::kNone) {
    ++counters.malformed[static_cast<int>(v.malformed)];
    d.verdict = options.malformed_verdict;
    d.reason = Reason::kMalformed;
    d.malformed = v.malformed;
    return d;
  }

  const uint32_t bytes = static_cast<uint32_t>(packet.bytes.size());
  EvalContext ctx;
  ctx.pkt = &v;
  const bool from_vm = view != View::kToVm;

  // Layer 2 first for frames from the VM.
  if (from_vm) {
    const L2Outcome l2 = RunL2(prog, L2Dir::kI, ctx, trace, ps->counters.data(), bytes);
    if (l2.instr >= 0) d.l2_rule = static_cast<int32_t>(l2.rule);
    if (l2.dropped) {
      d.verdict = Verdict::kDrop;
      d.reason = Reason::kRule;
      d.rule = d.l2_rule;
      return d;
    }
  }

  const bool l3 = v.family != 0 && v.vlan_tags == 0;
  ct::TrackResult tr;
  bool tracked = false;
  if (l3 && v.fragment && v.frag_offset != 0) {
    // A non-first fragment follows its datagram's first fragment.
    FragSlot& s = b->frags[FragHash(v)];
    if (FragKeyEq(s, v) && now <= s.expires) {
      Decision fd = s.decision;
      if (!v.more_fragments) s.used = false;  // last piece
      return fd;
    }
    ++counters.orphan_fragments;
    d.verdict = options.orphan_fragment_verdict;
    d.reason = Reason::kFragment;
    return d;
  }
  if (l3) {
    ct::PacketFacts facts = ToPacketFacts(v);
    tr = b->table.Track(facts, b->timeouts, now);
    tracked = true;
    d.ct_looked_at = true;
    d.ct_state = tr.state;
    d.ct_dir = tr.dir;
    ctx.tracked = true;
    ctx.state = tr.state;
    ctx.dir = tr.dir;
    ConnlimitArg carg{ps.get(), &facts.flow, &tr, &b->table, now};
    ctx.connlimit = &CountConnlimit;
    ctx.connlimit_arg = &carg;
    const L3Chain chain = view == View::kFromVm ? L3Chain::kFI
                          : view == View::kToVm ? L3Chain::kFO
                                                : L3Chain::kHI;
    const ChainOutcome o = RunL3(prog, chain, ctx, trace, ps->counters.data(), bytes);
    ctx.connlimit = nullptr;
    if (o.terminal) {
      d.verdict = L3Verdict(o.action);
      d.reason = Reason::kRule;
      d.rule = static_cast<int32_t>(o.rule);
    } else {
      d.verdict = Verdict::kAccept;
      d.reason = Reason::kFellOff;
      d.rule = -1;
    }
  } else if (from_vm) {
    // Layer 2 only: the frame passed libvirt-I.
    d.verdict = Verdict::kAccept;
    d.reason = d.l2_rule >= 0 ? Reason::kRule : Reason::kFellOff;
    d.rule = d.l2_rule;
  }

  if (!from_vm && d.verdict == Verdict::kAccept) {
    const L2Outcome l2 = RunL2(prog, L2Dir::kO, ctx, trace, ps->counters.data(), bytes);
    if (l2.instr >= 0) d.l2_rule = static_cast<int32_t>(l2.rule);
    if (l2.dropped) {
      d.verdict = Verdict::kDrop;
      d.reason = Reason::kRule;
      d.rule = d.l2_rule;
    } else if (d.rule < 0 && d.l2_rule >= 0) {
      d.reason = Reason::kRule;
      d.rule = d.l2_rule;
    }
  } else if (from_vm && d.rule < 0 && d.l2_rule >= 0 && d.verdict == Verdict::kAccept) {
    d.rule = d.l2_rule;
    d.reason = Reason::kRule;
  }

  if (tracked) {
    if (d.verdict == Verdict::kAccept) {
      b->table.Confirm(tr, now);
    } else if (tr.tentative) {
      b->table.Discard(tr);
    }
  }
  if (l3 && v.fragment && v.frag_offset == 0) {
    FragSlot& s = b->frags[FragHash(v)];
    s.used = true;
    s.family = v.family;
    s.proto = v.l4proto;
    s.id = v.frag_id;
    s.src = v.src_ip;
    s.dst = v.dst_ip;
    s.expires = now + kFragTimeout;
    s.decision = d;
  }
  return d;
}

Decision Engine::Decide(std::string_view portdev, View view, const PacketInput& packet,
                        ct::Nanos now) {
  return state_->Run(portdev, view, packet, now, nullptr, nullptr);
}

Decision Engine::Explain(std::string_view portdev, View view, const PacketInput& packet,
                         ct::Nanos now, std::string* explanation) {
  Trace trace;
  std::shared_ptr<ProgramState> ps;
  if (explanation != nullptr) explanation->clear();
  Decision d = state_->Run(portdev, view, packet, now, &trace, &ps);
  if (explanation != nullptr && ps != nullptr) *explanation = FormatTrace(*ps->program, trace);
  return d;
}

}  // namespace nwfq::engine
