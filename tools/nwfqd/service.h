// Running as a system service: systemd readiness notification and capability dropping.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace nwfq::nwfqd {

// sd_notify(3) by hand: sends `state` ("READY=1", "RELOADING=1", "STOPPING=1",
// "STATUS=...") as one datagram to $NOTIFY_SOCKET (a path or an abstract "@name").
// Without NOTIFY_SOCKET (not started by systemd with Type=notify) it does nothing.
void SdNotify(absl::string_view state);

// Keeps only CAP_NET_ADMIN (NFQUEUE verdicts, iptables steering changes at reload and
// removal at exit) and CAP_NET_RAW (reject: raw sockets) in the effective, permitted and
// bounding sets, and drops every other capability (libcap-ng). The uid stays 0, so the
// iptables children started later regain exactly these two on exec (root's exec rule:
// permitted = bounding set) and nothing else; the filter and binding files stay readable
// for reload as long as root owns them (no CAP_DAC_OVERRIDE any more).
absl::Status DropCapabilities();

}  // namespace nwfq::nwfqd
