// Layer-2 offload: this kernel has no bridge-family NFQUEUE, so frames that are not IP
// (ARP, RARP, VLAN-tagged, STP, other ethertypes) never reach nwfqd. nwfqd therefore hands
// exactly the layer-2 part of each binding (the `mac`, `vlan`, `stp`, `arp`, `rarp`, `ip`,
// `ipv6` rules and rules without a protocol element: InstantiatedBinding::l2_chains) to the
// kernel's bridge filtering, laid out as libvirt does (nwfilter-semantics b.3) but in
// nwfq's own chains of the ebtables `nat` table:
//
//   PREROUTING  -i TAP -j NWFQ-I-TAP     (libvirt-I-TAP: frames from the VM)
//   POSTROUTING -o TAP -j NWFQ-O-TAP     (libvirt-O-TAP: frames to the VM)
//   NWFQ-I-TAP-<chain> / NWFQ-O-TAP-<chain>: sub-chains (I-TAP-<chain> in libvirt), jumped to
//   from the root chain behind the chain kind's protocol guard (-p IPv4, -p ARP, ...)
//
// Each chain ends with an explicit `-j ACCEPT`: libvirt's chains accept a frame that falls
// off their end, sub-chains included (finding i.8), and ebtables-nft's default policy of
// a user chain (RETURN) would not.
//
// Offload is all or nothing per binding: if any layer-2 rule of a binding uses something
// this translation does not cover (`Unsupported()` says what), nothing of that binding is
// offloaded, and the caller keeps the engine's own layer-2 evaluation (IP frames only) and
// reports the rules that non-IP frames bypass. When a binding is offloaded, the engine
// must NOT evaluate its layer-2 rules again: the kernel already applied them to the real
// frame (with the real destination MAC, which NFQUEUE does not report), and libvirt's
// layer-2 and layer-3 filters are in series (a frame passes iff both pass), so skipping
// the engine's copy gives exactly libvirt's verdicts; evaluating them twice could drop
// frames the kernel accepted (rules on the destination MAC, which the engine can only
// approximate for queued packets). The caller does that with WithoutL2().
//
// Installation: one `ebtables-restore --noflush` transaction that takes down whatever NWFQ
// chains the kernel has (also those of a crashed run) and installs the new ones, so a
// reload never leaves frames unfiltered and a failed one changes nothing; Remove() is one
// transaction too. Runs in the caller's network namespace. Thread-safety: none.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parser/instantiated.h"

namespace nwfq::l2 {

// Why rule `rule` (index into binding.rules) cannot be offloaded, or "" if it can.
std::string Unsupported(const InstantiatedBinding& binding, uint32_t rule);

// Layer-2 rules of `binding` (one line each: "file:line (filter) direction element"), for
// messages about rules that are or are not enforced.
std::vector<std::string> DescribeL2Rules(const InstantiatedBinding& binding);

struct Plan {
  std::string script;                      // ebtables-restore --noflush input ("" = nothing)
  std::vector<std::string> offloaded;      // portdevs whose layer 2 is in the script
  std::vector<std::string> not_offloaded;  // "vnet0: file:line (filter): why" per blocking rule
};

// The ebtables rules for the layer-2 part of `bindings` (bindings without layer-2 rules
// need none and are in neither list).
Plan BuildPlan(const std::vector<InstantiatedBinding>& bindings);

// `binding` with its layer-2 chains emptied (for the engine, once offloaded).
InstantiatedBinding WithoutL2(const InstantiatedBinding& binding);

// Replaces every NWFQ chain in the kernel by `plan.script`, atomically.
absl::Status Install(const Plan& plan);
// Removes every NWFQ-I-* / NWFQ-O-* chain and the jumps to them. Idempotent.
absl::Status Remove();

}  // namespace nwfq::l2
