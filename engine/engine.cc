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

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/compiler.h"
#include "engine/defrag.h"
#include "engine/evaluator.h"
#include "engine/explain.h"

namespace nwfq::engine {
namespace {

// A compiled program with the mutable state that belongs to exactly this program:
// per-instruction counters and one connlimit limiter per connlimit rule instance.
struct ProgramState {
  uint32_t generation = 0;  // unique per SetBinding (never 0): keys the decision cache
  std::shared_ptr<const Program> program;
  std::vector<uint64_t> counters;  // 2 per instruction
  std::vector<ct::ConnLimiter> limiters;
  std::vector<std::string> l2_chain_names;
};

// The decision cache: for a connection's packets in one direction, the layer-3 outcome of
// the last packet, replayed (counters included) when the next one is known to give the
// same: same connection (slot + generation), same program, same view, ct state and
// direction, and the same values of every field the chain may read that is not part of
// the connection's tuple (TOS, ICMP type/code, source MAC, ...). Outcomes that depended
// on a field that changes per packet (TCP flags and options, connlimit counts:
// Instr::per_packet) are never stored. Only confirmed NEW and ESTABLISHED connections use
// it (RELATED packets are ICMP errors with their own addresses and types).
//
// Indexed by [conntrack slot][direction]; an entry that moved to another slot (cuckoo) or
// a slot reused by a new connection (new generation) simply misses.
//
// Why no hash of the whole packet: slot + generation + direction name the connection's
// tuple in that direction (the table keys TCP/UDP/UDPLite/SCTP by addresses and ports,
// ICMP by addresses, id, type and code, the rest by addresses, and rules read nothing
// else of the tuple), so only the per-packet fields are compared, exactly (`pkt`,
// `misc`). Generations are 24 bits and wrap after 16 M connections: `tuple`, a
// fingerprint of the addresses and ports, keeps a stale entry of an earlier connection
// whose generation the wrap repeated from being taken for the current one.
struct CachedDecision {
  uint64_t pkt = 0;       // source MAC | TOS << 48 | ICMP type << 56
  uint32_t misc = 0;      // view, ct state, has_l4, has_src_mac, family, ICMP code
  uint32_t tuple = 0;     // fingerprint of addresses, ports and protocol
  uint32_t ct_gen = 0;    // EntryRef::generation; generations start at 1, so 0 = empty
  uint32_t prog_gen = 0;  // ProgramState::generation
  int32_t matched[MatchLog::kMax] = {};
  uint8_t n = 0;
  bool terminal = false;  // matched[n - 1] is the deciding (terminal) instruction
};

inline uint64_t Load64(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

struct CacheKey {
  uint64_t pkt;
  uint32_t misc;
  uint32_t tuple;
};

inline CacheKey MakeCacheKey(const PacketView& v, View view, const ct::TrackResult& tr) {
  // The MAC as a 4-byte and a 2-byte load, shifted together: a 6-byte memcpy into a
  // uint64_t local became two stores and one 8-byte reload, which the CPU cannot forward
  // (a store-forwarding stall on every established packet).
  uint32_t mac_lo;
  uint16_t mac_hi;
  std::memcpy(&mac_lo, v.src_mac.data(), 4);
  std::memcpy(&mac_hi, v.src_mac.data() + 4, 2);
  const uint64_t mac = uint64_t{mac_lo} | uint64_t{mac_hi} << 32;
  CacheKey k;
  k.pkt = mac | uint64_t{v.tos} << 48 | uint64_t{v.icmp_type} << 56;
  k.misc = uint32_t{static_cast<uint8_t>(view)} | uint32_t{static_cast<uint8_t>(tr.state)} << 2 |
           uint32_t{v.has_l4} << 5 | uint32_t{v.has_src_mac} << 6 | uint32_t{v.family == 6} << 7 |
           uint32_t{v.icmp_code} << 8 | 1u << 16;  // never 0 (an empty entry)
  // Independent multiplies (no serial chain): a changed word always changes the sum.
  const uint64_t ports = uint64_t{v.sport} | uint64_t{v.dport} << 16 | uint64_t{v.l4proto} << 32;
  const uint64_t t = Load64(v.src_ip.data()) * 0x9e3779b97f4a7c15ull +
                     Load64(v.src_ip.data() + 8) * 0xc2b2ae3d27d4eb4full +
                     Load64(v.dst_ip.data()) * 0x165667b19e3779f9ull +
                     Load64(v.dst_ip.data() + 8) * 0xd6e8feb86659fd93ull +
                     ports * 0xff51afd7ed558ccdull;
  k.tuple = static_cast<uint32_t>(t >> 32);
  return k;
}

// Goes to the defragmenter: an IP fragment (not VLAN-tagged: those bypass iptables), not an
// IPv6 atomic fragment (offset 0, M=0: nf_ct_frag6_gather passes it on as it is). Its
// transport header may be cut by the fragmentation (kTruncatedL4 / kBadL4Header): that is
// no malformation of the fragment, only of a datagram that stays too short.
inline bool ToDefrag(const PacketView& v) {
  return v.fragment && v.family != 0 && v.vlan_tags == 0 &&
         (v.frag_offset != 0 || v.more_fragments) &&
         (v.malformed == Malformed::kNone || v.malformed == Malformed::kTruncatedL4 ||
          v.malformed == Malformed::kBadL4Header);
}

// Conntrack looks at the packet (IP, not VLAN-tagged, not a non-first fragment, parsed).
inline bool Trackable(const PacketView& v) {
  return v.malformed == Malformed::kNone && v.family != 0 && v.vlan_tags == 0 &&
         !(v.fragment && v.frag_offset != 0);
}

// Compares names of at most 16 bytes without a call (overlapping loads).
inline bool SameName(const char* a, const char* b, size_t n) {
  auto l64 = [](const char* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  };
  auto l32 = [](const char* p) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
  };
  if (n >= 8) return l64(a) == l64(b) && l64(a + n - 8) == l64(b + n - 8);
  if (n >= 4) return l32(a) == l32(b) && l32(a + n - 4) == l32(b + n - 4);
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Same flow key (every FlowFacts field; field by field, as the padding is unspecified).
inline bool SameFlow(const ct::FlowFacts& a, const ct::FlowFacts& b) {
  auto l64 = [](const uint8_t* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  };
  return ((l64(a.src.data()) ^ l64(b.src.data())) |
          (l64(a.src.data() + 8) ^ l64(b.src.data() + 8)) |
          (l64(a.dst.data()) ^ l64(b.dst.data())) |
          (l64(a.dst.data() + 8) ^ l64(b.dst.data() + 8))) == 0 &&
         a.family == b.family && a.l4proto == b.l4proto && a.sport == b.sport &&
         a.dport == b.dport && a.icmp_type == b.icmp_type && a.icmp_code == b.icmp_code &&
         a.icmp_id == b.icmp_id && a.spi == b.spi && a.gre_key == b.gre_key;
}

// The decision cache's memory: an anonymous mapping (zero pages, resident once touched,
// like calloc's) advised for huge pages, as conntrack's table is: with many connections
// the entries are met at random over tens of MB, and with 4 KB pages nearly every
// packet also missed the TLB (measured: BM_Established64KFlows).
struct CacheMapping {
  void* base = nullptr;
  size_t bytes = 0;
  CacheMapping() = default;
  explicit CacheMapping(size_t n) : bytes(n) {
    void* m = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      bytes = 0;
      return;
    }
    madvise(m, n, MADV_HUGEPAGE);  // best effort
    base = m;
  }
  CacheMapping(const CacheMapping&) = delete;
  CacheMapping& operator=(const CacheMapping&) = delete;
  ~CacheMapping() {
    if (base != nullptr) munmap(base, bytes);
  }
};

struct BindingState {
  BindingState(const EngineOptions& o, const ct::TimeoutPolicy* root)
      : table(TableOpts(o)), timeouts(root), defrag(o.defrag) {
    // Zero pages mapped lazily: an idle binding costs address space only.
    cache_slots = table.slot_count();
    cache_mapping = std::make_unique<CacheMapping>(cache_slots * 2 * sizeof(CachedDecision));
    cache = static_cast<CachedDecision*>(cache_mapping->base);
    if (cache == nullptr) cache_slots = 0;
  }
  static ct::TableOptions TableOpts(const EngineOptions& o) {
    ct::TableOptions t = o.table;
    t.capacity = o.conntrack_capacity;
    return t;
  }
  ct::Table table;
  ct::TimeoutPolicy timeouts;
  std::shared_ptr<ProgramState> prog;  // guarded by Engine::State::mu for the swap
  Defragmenter defrag;                 // IP fragments, per binding like conntrack (a zone per tap)
  std::unique_ptr<CacheMapping> cache_mapping;
  CachedDecision* cache = nullptr;  // [slot * 2 + dir], in cache_mapping
  size_t cache_slots = 0;
};
static_assert(std::is_trivially_copyable_v<CachedDecision>);
static_assert(std::is_trivially_destructible_v<Decision>);  // DecideBatch: placement new

// The last binding a thread looked up (per thread, so workers never share it): Decide()
// skips the mutex and the map while the engine's bindings have not changed (version).
// It holds references, so the binding stays alive while the thread may still use it; the
// engine resets the destroying thread's entry, another thread's entry is released at its
// next lookup (or exit).
struct HotBinding {
  uint64_t engine_id = 0;
  uint64_t version = 0;
  std::array<char, 16> name{};  // IFNAMSIZ; longer names are not cached
  size_t name_len = 0;
  std::shared_ptr<BindingState> b;
  std::shared_ptr<ProgramState> ps;
  bool Matches(uint64_t id, uint64_t ver, std::string_view dev) const {
    return engine_id == id && version == ver && dev.size() == name_len &&
           SameName(dev.data(), name.data(), name_len);
  }
};
thread_local HotBinding tls_hot;
std::atomic<uint64_t> next_engine_id{1};

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
  const uint64_t id = next_engine_id.fetch_add(1, std::memory_order_relaxed);
  // Bumped (under mu) by every change of `bindings` or of a binding's program.
  std::atomic<uint64_t> version{1};
  std::atomic<uint32_t> next_program{1};
  EngineOptions options;
  ct::TimeoutPolicy root_timeouts;
  mutable absl::Mutex mu;
  absl::flat_hash_map<std::string, std::shared_ptr<BindingState>> bindings ABSL_GUARDED_BY(mu);
  EngineCounters counters;  // bumped by the deciding thread

  // A binding and its program, resolved for one packet (or one batch). The raw pointers
  // stay valid while the references (here or in the per-thread entry) are held.
  struct Binding {
    BindingState* b = nullptr;
    ProgramState* ps = nullptr;
    std::shared_ptr<BindingState> b_hold;  // set for names too long for the per-thread entry
    std::shared_ptr<ProgramState> ps_hold;
  };
  bool Lookup(std::string_view portdev, Binding& out) {
    const HotBinding& hot = tls_hot;
    if (hot.Matches(id, version.load(std::memory_order_acquire), portdev)) [[likely]] {
      out.b = hot.b.get();
      out.ps = hot.ps.get();
      return true;
    }
    return LookupSlow(portdev, out);
  }
  bool LookupSlow(std::string_view portdev, Binding& out);
  PacketView Parse(const Program& prog, View view, const PacketInput& packet) const {
    ParseOptions popt;
    popt.verify_checksums = options.verify_checksums && !packet.checksum_unverified;
    if (packet.layer == Layer::kEthernet) [[likely]] {
      return ParseEthernet(packet.bytes, popt);
    }
    return ParseNfqueue(prog, view, packet, popt);
  }
  PacketView ParseNfqueue(const Program& prog, View view, const PacketInput& packet,
                          ParseOptions popt) const;
  Decision Run(std::string_view portdev, View view, const PacketInput& packet, ct::Nanos now,
               Trace* trace, std::shared_ptr<ProgramState>* used);
  // Everything after parsing; `facts` = ToPacketFacts(v) when Trackable(v) (else unused).
  // `probe`: b.table.Probe(facts), when the caller computed it (DecideBatch), so that
  // conntrack does not hash the flow again; null otherwise.
  // `reassembled`: `v` is a datagram the defragmenter completed (its fragments already
  // passed the from-VM layer-2 chain one by one, as ebtables sees them before defrag).
  Decision Finish(BindingState& b, ProgramState& ps, View view, const PacketInput& packet,
                  const PacketView& v, const ct::PacketFacts& facts, ct::Nanos now, Trace* trace,
                  const ct::FlowProbe* probe = nullptr, bool reassembled = false);
  // A fragment after the from-VM layer-2 chain: held, dropped, or its datagram decided.
  Decision Defrag(BindingState& b, ProgramState& ps, View view, const PacketInput& packet,
                  const PacketView& v, Decision d, ct::Nanos now, Trace* trace);
  void Release(uint64_t token, const Decision& d) { released.push_back({token, d}); }
  // A held fragment the defragmenter gave up on (timer, flush, binding removed): dropped,
  // counted by reason, and released to its owner.
  void DropHeld(uint64_t token, FragDrop why) {
    Decision x;
    x.verdict = Verdict::kDrop;
    x.reason = Reason::kFragment;
    x.frag = why;
    ++counters.frag_dropped[static_cast<int>(why)];
    Release(token, x);
  }

  std::vector<Released> released;  // settled held fragments, for TakeReleased()
  // Bindings removed while they may still hold fragments: RemoveBinding runs on a control
  // thread, so their queues are drained by the next TakeReleased() on the deciding thread.
  std::vector<std::shared_ptr<BindingState>> retired ABSL_GUARDED_BY(mu);
  std::atomic<bool> has_retired{false};

  size_t maintain_cursor = 0;  // Maintain(): binding to start with
};

Engine::Engine(const EngineOptions& options) : state_(std::make_unique<State>(options)) {}
Engine::~Engine() {
  if (tls_hot.engine_id == state_->id) tls_hot = HotBinding{};
}

absl::Status Engine::SetBinding(const InstantiatedBinding& binding) {
  absl::StatusOr<std::shared_ptr<const Program>> prog = Compile(binding);
  if (!prog.ok()) {
    return absl::Status(prog.status().code(),
                        absl::StrCat("binding ", binding.portdev, ": ", prog.status().message()));
  }
  auto ps = std::make_shared<ProgramState>();
  ps->generation = state_->next_program.fetch_add(1, std::memory_order_relaxed);
  if (ps->generation == 0) ps->generation = state_->next_program.fetch_add(1);
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
  state_->version.fetch_add(1, std::memory_order_release);
  return absl::OkStatus();
}

void Engine::RemoveBinding(std::string_view portdev) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->bindings.find(absl::string_view(portdev.data(), portdev.size()));
  if (it == state_->bindings.end()) return;
  state_->retired.push_back(std::move(it->second));  // its held fragments: TakeReleased()
  state_->has_retired.store(true, std::memory_order_release);
  state_->bindings.erase(it);
  state_->version.fetch_add(1, std::memory_order_release);
}

ct::TimeoutPolicy& Engine::timeouts() { return state_->root_timeouts; }

ct::TimeoutPolicy* Engine::binding_timeouts(std::string_view portdev) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->bindings.find(absl::string_view(portdev.data(), portdev.size()));
  return it == state_->bindings.end() ? nullptr : &it->second->timeouts;
}

EngineCounters Engine::counters() const { return state_->counters; }

ct::Table* Engine::conntrack_table(std::string_view portdev) {
  absl::MutexLock lock(&state_->mu);
  auto it = state_->bindings.find(absl::string_view(portdev.data(), portdev.size()));
  return it == state_->bindings.end() ? nullptr : &it->second->table;
}

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

namespace {

// False when the root chain of `dir` is empty: nothing to look at (a frame falls off it).
inline bool HasL2(const Program& prog, L2Dir dir) {
  const auto& chains = prog.l2[static_cast<int>(dir)];
  return !chains.empty() && chains[0].count != 0;
}

// Runs the layer-3 chain, with connlimit counts available to it.
ChainOutcome RunL3Counting(BindingState& b, ProgramState& ps, L3Chain chain,
                           const ct::PacketFacts& facts, const ct::TrackResult& tr,
                           const EvalContext& base, Trace* trace, uint32_t bytes, ct::Nanos now,
                           MatchLog* log) {
  ConnlimitArg carg{&ps, &facts.flow, &tr, &b.table, now};
  EvalContext ctx = base;
  ctx.connlimit = &CountConnlimit;
  ctx.connlimit_arg = &carg;
  return RunL3(*ps.program, chain, ctx, trace, ps.counters.data(), bytes, log);
}

// Layer 3 through the decision cache (see CachedDecision). A hit replays the stored
// outcome without building the evaluation's connlimit context.
ChainOutcome DecideL3(BindingState& b, ProgramState& ps, View view, L3Chain chain,
                      const PacketView& v, const ct::PacketFacts& facts, const ct::TrackResult& tr,
                      const EvalContext& ctx, Trace* trace, uint32_t bytes, ct::Nanos now,
                      uint64_t& hits) {
  const Program& prog = *ps.program;
  uint64_t* counters = ps.counters.data();
  const bool cacheable = trace == nullptr && tr.entry.valid() && !tr.tentative &&
                         (tr.state == ct::State::kEstablished || tr.state == ct::State::kNew) &&
                         tr.entry.slot < b.cache_slots;
  if (!cacheable) return RunL3Counting(b, ps, chain, facts, tr, ctx, trace, bytes, now, nullptr);
  CachedDecision& c = b.cache[size_t{tr.entry.slot} * 2 + (tr.dir == ct::Dir::kReply ? 1 : 0)];
  const CacheKey key = MakeCacheKey(v, view, tr);
  if (c.ct_gen == tr.entry.generation && c.prog_gen == ps.generation && c.pkt == key.pkt &&
      c.misc == key.misc && c.tuple == key.tuple) {
    ++hits;
    ChainOutcome o;
    for (uint8_t k = 0; k < c.n; ++k) {
      const size_t i = static_cast<size_t>(c.matched[k]);
      counters[2 * i] += 1;
      counters[2 * i + 1] += bytes;
    }
    if (c.terminal) {
      const Instr& in = prog.instrs[static_cast<size_t>(c.matched[c.n - 1])];
      o.terminal = true;
      o.action = in.action;
      o.instr = c.matched[c.n - 1];
      o.rule = in.rule;
    }
    return o;
  }
  MatchLog log;
  const ChainOutcome o = RunL3Counting(b, ps, chain, facts, tr, ctx, nullptr, bytes, now, &log);
  if (log.Cacheable()) {
    c.pkt = key.pkt;
    c.misc = key.misc;
    c.tuple = key.tuple;
    c.ct_gen = tr.entry.generation;
    c.prog_gen = ps.generation;
    c.n = log.n;
    std::copy_n(log.matched, log.n, c.matched);
    c.terminal = o.terminal;
  }
  return o;
}

}  // namespace

bool Engine::State::LookupSlow(std::string_view portdev, Binding& out) {
  HotBinding& hot = tls_hot;
  absl::ReaderMutexLock lock(&mu);
  auto it = bindings.find(absl::string_view(portdev.data(), portdev.size()));
  if (it == bindings.end() || it->second->prog == nullptr) return false;
  if (portdev.size() <= hot.name.size()) {
    hot.engine_id = id;
    hot.version = version.load(std::memory_order_relaxed);  // stable under mu
    hot.name_len = portdev.size();
    std::memcpy(hot.name.data(), portdev.data(), portdev.size());
    hot.b = it->second;
    hot.ps = it->second->prog;
    out.b = hot.b.get();
    out.ps = hot.ps.get();
  } else {
    out.b_hold = it->second;
    out.ps_hold = out.b_hold->prog;
    out.b = out.b_hold.get();
    out.ps = out.ps_hold.get();
  }
  return true;
}

PacketView Engine::State::ParseNfqueue(const Program& prog, View view, const PacketInput& packet,
                                       ParseOptions popt) const {
  popt.wire_len = packet.wire_len;
  PacketView v = ParseNetwork(packet.bytes, packet.ethertype, popt);
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
  return v;
}

Decision Engine::State::Run(std::string_view portdev, View view, const PacketInput& packet,
                            ct::Nanos now, Trace* trace, std::shared_ptr<ProgramState>* used) {
  ++counters.packets;
  Binding bd;
  if (!Lookup(portdev, bd)) {
    ++counters.no_binding;
    Decision d;
    d.reason = Reason::kNoBinding;
    return d;
  }
  if (used != nullptr) *used = bd.ps_hold != nullptr ? bd.ps_hold : tls_hot.ps;
  const PacketView v = Parse(*bd.ps->program, view, packet);
  // Built in place (no copy) by either branch.
  const ct::PacketFacts facts = Trackable(v) ? ToPacketFacts(v) : ct::PacketFacts{};
  return Finish(*bd.b, *bd.ps, view, packet, v, facts, now, trace);
}

Decision Engine::State::Finish(BindingState& bs, ProgramState& pst, View view,
                               const PacketInput& packet, const PacketView& v,
                               const ct::PacketFacts& facts, ct::Nanos now, Trace* trace,
                               const ct::FlowProbe* probe, bool reassembled) {
  BindingState* b = &bs;
  ProgramState* ps = &pst;
  const Program& prog = *ps->program;
  Decision d;
  const bool to_defrag = !reassembled && ToDefrag(v);
  if (v.malformed != Malformed::kNone && !to_defrag) {
    ++counters.malformed[static_cast<int>(v.malformed)];
    d.verdict = options.malformed_verdict;
    d.reason = Reason::kMalformed;
    d.malformed = v.malformed;
    return d;
  }

  const uint32_t bytes = std::max(static_cast<uint32_t>(packet.bytes.size()), packet.wire_len);
  EvalContext ctx;
  ctx.pkt = &v;
  const bool from_vm = view != View::kToVm;

  // Layer 2 first for frames from the VM (per fragment: ebtables runs before defrag).
  if (from_vm && !reassembled && HasL2(prog, L2Dir::kI)) {
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
  if (to_defrag) return Defrag(*b, *ps, view, packet, v, d, now, trace);
  if (l3) {
    tr = probe != nullptr ? b->table.Track(facts, *probe, b->timeouts, now)
                          : b->table.Track(facts, b->timeouts, now);
    tracked = true;
    d.ct_looked_at = true;
    d.ct_state = tr.state;
    d.ct_dir = tr.dir;
    ctx.tracked = true;
    ctx.state = tr.state;
    ctx.dir = tr.dir;
    const L3Chain chain = view == View::kFromVm ? L3Chain::kFI
                          : view == View::kToVm ? L3Chain::kFO
                                                : L3Chain::kHI;
    const ChainOutcome o = DecideL3(*b, *ps, view, chain, v, facts, tr, ctx, trace, bytes, now,
                                    counters.decision_cache_hits);
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
    const L2Outcome l2 = HasL2(prog, L2Dir::kO)
                             ? RunL2(prog, L2Dir::kO, ctx, trace, ps->counters.data(), bytes)
                             : L2Outcome{};
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

  // Only a tentative (new) connection has anything to confirm or discard (Confirm is a
  // no-op for the others): an established packet makes no call.
  if (tracked && tr.tentative) {
    if (d.verdict == Verdict::kAccept) {
      b->table.Confirm(tr, now);
    } else {
      b->table.Discard(tr);
    }
  }
  return d;
}

Decision Engine::State::Defrag(BindingState& b, ProgramState& ps, View view,
                               const PacketInput& packet, const PacketView& v, Decision d,
                               ct::Nanos now, Trace* trace) {
  // Timers first (the kernel's run on their own): an expired queue is gone before this
  // fragment looks for it.
  b.defrag.Expire(now, false, FragDrop::kNone,
                  [&](uint64_t token, FragDrop why) { DropHeld(token, why); });
  const std::span<const uint8_t> ip =
      packet.bytes.subspan(std::min<size_t>(v.l3_offset, packet.bytes.size()));
  const bool sum_ok = options.verify_checksums && !packet.checksum_unverified;
  const Defragmenter::Result r = b.defrag.Add(v, ip, sum_ok, packet.token, now);
  d.reason = Reason::kFragment;
  d.verdict = Verdict::kDrop;
  switch (r.kind) {
    case Defragmenter::Kind::kHeld:
      ++counters.fragments_held;
      d.held = true;
      return d;
    case Defragmenter::Kind::kDropped:
      d.frag = r.drop;
      counters.frag_dropped[static_cast<int>(r.drop)] += 1 + r.released.size();
      for (uint64_t t : r.released) Release(t, d);
      return d;
    case Defragmenter::Kind::kComplete:
      break;
  }
  // The datagram: its first fragment's header (lengths fixed, fragment fields cleared)
  // and the first bytes of its payload, parsed as a truncated NFQUEUE copy of it.
  PacketInput whole;
  whole.bytes = r.datagram;
  whole.layer = Layer::kNetwork;
  whole.ethertype = v.family == 4 ? kEtherIpv4 : kEtherIpv6;
  whole.wire_len = r.datagram_len;
  whole.checksum_unverified = true;  // verified below from the fragments' sums
  whole.token = packet.token;
  ParseOptions popt;
  popt.verify_checksums = false;
  popt.wire_len = r.datagram_len;
  PacketView w = ParseNetwork(r.datagram, whole.ethertype, popt);
  // The layer-2 facts of the frame that completed it.
  w.has_l2 = v.has_l2;
  w.has_src_mac = v.has_src_mac;
  w.src_mac = v.src_mac;
  w.dst_mac = v.dst_mac;
  w.outer_ethertype = v.outer_ethertype;
  w.l2_len = v.l2_len;
  w.reassembled = true;
  w.truncated = false;  // whole as far as rules and conntrack are concerned
  if (w.malformed == Malformed::kNone && options.verify_checksums && r.sum_known) {
    const int ok = DatagramChecksum(w, r.datagram, r.payload_offset, r.payload_sum);
    if (ok >= 0) {
      w.checksum_checked = true;
      w.bad_checksum = ok == 0;
    }
  }
  const ct::PacketFacts facts = Trackable(w) ? ToPacketFacts(w) : ct::PacketFacts{};
  Decision out = Finish(b, ps, view, whole, w, facts, now, trace, nullptr, true);
  if (out.l2_rule < 0) out.l2_rule = d.l2_rule;
  out.reassembled = true;
  ++counters.datagrams_reassembled;
  for (uint64_t t : r.released) Release(t, out);
  return out;
}

void Engine::TakeReleased(std::vector<Released>* out) {
  State& st = *state_;
  if (st.has_retired.load(std::memory_order_acquire)) {
    std::vector<std::shared_ptr<BindingState>> gone;
    {
      absl::MutexLock lock(&st.mu);
      gone.swap(st.retired);
      st.has_retired.store(false, std::memory_order_relaxed);
    }
    for (const auto& b : gone) {
      b->defrag.Expire(0, true, FragDrop::kBindingRemoved,
                       [&](uint64_t token, FragDrop w) { st.DropHeld(token, w); });
    }
  }
  out->clear();
  std::swap(*out, st.released);
}

void Engine::FlushFragments(FragDrop why) {
  State& st = *state_;
  std::vector<std::shared_ptr<BindingState>> all;
  {
    absl::ReaderMutexLock lock(&st.mu);
    for (const auto& [name, b] : st.bindings) all.push_back(b);
  }
  for (const auto& b : all) {
    b->defrag.Expire(0, true, why, [&](uint64_t token, FragDrop w) { st.DropHeld(token, w); });
  }
}

size_t Engine::held_fragments() const {
  absl::ReaderMutexLock lock(&state_->mu);
  size_t n = 0;
  for (const auto& [name, b] : state_->bindings) n += b->defrag.fragments();
  return n;
}

void Engine::DecideBatch(std::span<const BatchPacket> packets, ct::Nanos now,
                         std::span<Decision> out) {
  State& st = *state_;
  // Software pipeline over the batch: packet i + kIndexAhead is looked up, parsed, hashed
  // once (Table::Probe) and its conntrack buckets prefetched, packet i + kEntryAhead gets
  // its entry prefetched, packet i + kRecordAhead its TCP/IPv6 record, then packet i is
  // decided. Parsing ahead is safe (it reads only the packet); everything that
  // reads or changes state (layer 2 counters, conntrack, fragments, the cache) runs in
  // packet order in Finish(), exactly as Decide() would.
  constexpr size_t kFrameAhead = 12, kIndexAhead = 8, kEntryAhead = 4, kRecordAhead = 2, kRing = 16;
  static_assert(kIndexAhead < kFrameAhead && kIndexAhead < kRing && kEntryAhead < kIndexAhead &&
                kRecordAhead < kEntryAhead);
  // Ring of parsed packets. Raw storage: PacketView and PacketFacts are trivially
  // destructible, and zeroing 16 of each per call would cost more than the pipeline saves.
  struct Staged {
    int held;  // index into `held` below; -1: no binding; -2: decided by Run()
    bool has_facts;
    PacketView* v;
    ct::PacketFacts* facts;
    ct::FlowProbe probe;  // facts' conntrack hash: computed once, used by every stage
    bool repeat;          // same binding and flow as the packet before: nothing to prefetch
    alignas(PacketView) unsigned char v_buf[sizeof(PacketView)];
    alignas(ct::PacketFacts) unsigned char facts_buf[sizeof(ct::PacketFacts)];
  };
  // Bindings met in this batch. Their raw pointers come from the per-thread entry
  // (tls_hot) while it holds them; before a lookup may replace that entry, the ones that
  // rely on it take references of their own (no reference counting at all when the batch
  // has a single binding, the usual case). More than kMaxHeld distinct bindings: the
  // rest go through Run() without the pipeline.
  constexpr int kMaxHeld = 8;
  struct Held {
    std::string_view name;
    State::Binding bd;
  };
  std::array<Held, kMaxHeld> held;
  int n_held = 0;
  std::array<Staged, kRing> ring;
  const size_t n = std::min(packets.size(), out.size());

  auto stage = [&](size_t i) {
    Staged& s = ring[i % kRing];
    const BatchPacket& p = packets[i];
    s.held = -1;
    s.has_facts = false;
    for (int h = 0; h < n_held; ++h) {
      if (held[h].name.size() == p.portdev.size() &&
          SameName(held[h].name.data(), p.portdev.data(), p.portdev.size())) {
        s.held = h;
        break;
      }
    }
    if (s.held < 0) {
      if (n_held == kMaxHeld) {
        s.held = -2;
        return;
      }
      for (int h = 0; h < n_held; ++h) {  // pin: the lookup may replace tls_hot
        if (held[h].bd.b_hold == nullptr) {
          held[h].bd.b_hold = tls_hot.b;
          held[h].bd.ps_hold = tls_hot.ps;
        }
      }
      Held& h = held[n_held];
      if (!st.Lookup(p.portdev, h.bd)) return;
      h.name = p.portdev;
      s.held = n_held++;
    }
    const State::Binding& bd = held[s.held].bd;
    s.v = new (s.v_buf) PacketView(st.Parse(*bd.ps->program, p.view, p.packet));
    if (Trackable(*s.v)) {
      s.facts = new (s.facts_buf) ct::PacketFacts(ToPacketFacts(*s.v));
      s.has_facts = true;
      // A burst of one flow (a TCP transfer, segments of one GSO packet) is the common
      // batch: the packet before has the same hash and is already fetching the same lines.
      const Staged& prev = ring[(i + kRing - 1) % kRing];
      s.repeat = i > 0 && prev.has_facts && prev.held == s.held &&
                 SameFlow(prev.facts->flow, s.facts->flow);
      if (s.repeat) {
        s.probe = prev.probe;
      } else {
        s.probe = bd.b->table.Probe(*s.facts);
        bd.b->table.PrefetchIndex(s.probe);
      }
    }
  };

  for (size_t i = 0; i < std::min(n, kIndexAhead); ++i) stage(i);
  // The connection's entry and, through the slot its tag points at, the decision-cache
  // entries of that slot (both directions): with many connections the cache line was the
  // one miss left (three quarters of Finish's samples at 64K flows under perf).
  // A repeat takes the slot found for the packet before it (FlowProbe::slot, Track's hint).
  auto prefetch_entry = [&](size_t j) {
    Staged& s = ring[j % kRing];
    if (!s.has_facts) return;
    if (s.repeat) {
      s.probe.slot = ring[(j + kRing - 1) % kRing].probe.slot;
      return;
    }
    BindingState& b = *held[s.held].bd.b;
    const uint32_t slot = b.table.PrefetchEntry(s.probe);
    if (slot >= b.cache_slots) return;
    const char* c = reinterpret_cast<const char*>(&b.cache[size_t{slot} * 2]);
    __builtin_prefetch(c);
    __builtin_prefetch(c + 2 * sizeof(CachedDecision) - 1);
  };
  for (size_t i = 0; i < std::min(n, kEntryAhead); ++i) prefetch_entry(i);
  // The headers of the packet staged next-but-four: its parse then finds them in cache
  // (a receive buffer just written by the kernel usually is; a replayed capture is not).
  auto prefetch_frame = [&](size_t j) {
    const std::span<const uint8_t> bytes = packets[j].packet.bytes;
    if (bytes.empty()) return;
    __builtin_prefetch(bytes.data());
    if (bytes.size() > 64) __builtin_prefetch(bytes.data() + 64);
  };
  for (size_t j = kIndexAhead; j < std::min(n, kFrameAhead); ++j) prefetch_frame(j);
  for (size_t i = 0; i < n; ++i) {
    if (i + kFrameAhead < n) prefetch_frame(i + kFrameAhead);
    if (i + kIndexAhead < n) stage(i + kIndexAhead);
    if (i + kEntryAhead < n) prefetch_entry(i + kEntryAhead);
    if (i + kRecordAhead < n) {  // TCP / IPv6: the entry's pool record
      const Staged& s = ring[(i + kRecordAhead) % kRing];
      if (s.has_facts && !s.repeat && s.probe.record)
        held[s.held].bd.b->table.PrefetchRecord(s.probe);
    }
    const Staged& s = ring[i % kRing];
    const BatchPacket& p = packets[i];
    if (s.held == -2) {
      out[i] = st.Run(p.portdev, p.view, p.packet, now, nullptr, nullptr);
      continue;
    }
    ++st.counters.packets;
    if (s.held < 0) {
      ++st.counters.no_binding;
      out[i] = Decision{};
      out[i].reason = Reason::kNoBinding;
      continue;
    }
    const State::Binding& bd = held[s.held].bd;
    // Finish reads `facts` only for trackable packets (has_facts).
    static const ct::PacketFacts kNoFacts{};
    // Finish writes straight into out[i] (placement new of the returned prvalue: the copy
    // is elided; Decision is trivially destructible). std::construct_at took the result
    // as an argument, i.e. a temporary written field by field and then re-read 16 bytes
    // at a time: a store-forwarding stall per packet (half of DecideBatch's own time).
    ::new (static_cast<void*>(&out[i]))
        Decision(st.Finish(*bd.b, *bd.ps, p.view, p.packet, *s.v, s.has_facts ? *s.facts : kNoFacts,
                           now, nullptr, s.has_facts ? &s.probe : nullptr));
  }
}

size_t Engine::Maintain(ct::Nanos now, size_t budget) {
  State& st = *state_;
  // The bindings are visited round robin, `budget` slots in all per call, so a large table
  // is swept across many calls and every binding gets its turn.
  std::vector<std::shared_ptr<BindingState>> todo;
  {
    absl::ReaderMutexLock lock(&st.mu);
    if (st.bindings.empty()) return 0;
    todo.reserve(st.bindings.size());
    for (const auto& [name, b] : st.bindings) todo.push_back(b);
  }
  std::sort(todo.begin(), todo.end());  // a stable order between calls
  size_t removed = 0;
  size_t left = budget;
  const size_t n = todo.size();
  for (const auto& b : todo) {  // reassembly timers (nothing to do without fragments)
    b->defrag.Expire(now, false, FragDrop::kNone,
                     [&](uint64_t token, FragDrop why) { st.DropHeld(token, why); });
  }
  for (size_t k = 0; k < n && left > 0; ++k) {
    BindingState& b = *todo[(st.maintain_cursor + k) % n];
    const size_t step = std::min(left, std::max<size_t>(1, budget / n));
    removed += b.table.Sweep(step, now);
    left -= step;
  }
  st.maintain_cursor = (st.maintain_cursor + 1) % n;
  return removed;
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
