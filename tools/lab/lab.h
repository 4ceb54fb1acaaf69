// The nwfq lab: three network namespaces that play a KVM host, one VM and a remote peer,
// so nwfqd can filter real traffic without a VM (same topology as ../shared/oracle):
//
//  nwfq-vm                    nwfq-host                                   nwfq-peer
//  eth0 52:54:00:00:00:02     vnet0 fe:54:00:00:00:02 (the VM's "tap")     eth0 52:54:00:00:00:03
//  198.18.0.2/24   <-veth->   port of br0 198.18.0.1/24   uplink0 <-veth-> 198.18.0.3/24, .4
//  2001:db8::2/64             2001:db8::1/64 (bridge netfilter on)         2001:db8::3/64, ::4
//
// Bridged VM<->peer traffic crosses iptables FORWARD in nwfq-host (br_netfilter), VM->host
// traffic crosses INPUT. Nothing here touches the caller's (root) namespace: every command
// is `ip -n NS ...` or `ip netns exec NS ...`, and each namespace is checked not to be the
// caller's own before anything is configured in it.
//
// Thread-safety: none; one lab per machine (the names are fixed). Needs root.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace nwfq::lab {

inline constexpr char kHostNs[] = "nwfq-host";
inline constexpr char kVmNs[] = "nwfq-vm";
inline constexpr char kPeerNs[] = "nwfq-peer";
inline constexpr char kBridge[] = "br0";
inline constexpr char kTap[] = "vnet0";
inline constexpr char kUplink[] = "uplink0";
inline constexpr char kVmMac[] = "52:54:00:00:00:02";
inline constexpr char kTapMac[] = "fe:54:00:00:00:02";
inline constexpr char kPeerMac[] = "52:54:00:00:00:03";
inline constexpr char kHostIp4[] = "198.18.0.1";
inline constexpr char kVmIp4[] = "198.18.0.2";
inline constexpr char kPeerIp4[] = "198.18.0.3";
inline constexpr char kPeerIp4b[] = "198.18.0.4";
inline constexpr char kHostIp6[] = "2001:db8::1";
inline constexpr char kVmIp6[] = "2001:db8::2";
inline constexpr char kPeerIp6[] = "2001:db8::3";
inline constexpr char kPeerIp6b[] = "2001:db8::4";

// The three namespaces, host first.
std::vector<std::string> Namespaces();

// True if `ns` is a named namespace (/run/netns/<ns>).
bool NamespaceExists(const std::string& ns);

// An error if namespace `ns` is the calling process's own network namespace (as would be
// the case if /run/netns/<ns> were a bind mount of the root namespace).
absl::Status AssertNotCallerNamespace(const std::string& ns);

// Builds the topology. Already up and complete: does nothing. Partly up (say after a
// crash): tears down and rebuilds. Checks the unfiltered VM->peer path with a bounded ping.
// `verbose` prints each step to stderr.
absl::Status Up(bool verbose = false);

// Removes everything: ends the processes still inside the three namespaces (by PID,
// SIGTERM then SIGKILL), then deletes the namespaces, which takes their links, addresses
// and firewall rules with them. Idempotent; works after a crash.
absl::Status Down(bool verbose = false);

struct LabStatus {
  bool complete = false;  // all namespaces and links present
  bool any = false;       // at least one namespace present
  std::string report;     // human-readable, multi-line
};
absl::StatusOr<LabStatus> Status();

// `ip netns exec NS argv...`
std::vector<std::string> InNs(const std::string& ns, std::vector<std::string> argv);

}  // namespace nwfq::lab
