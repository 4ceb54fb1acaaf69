#include "tests/oracle/kernel_side.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace nwfq::oracle {
namespace {

std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  return q + "'";
}

int64_t NowMicros() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000;
}

// An AF_PACKET socket bound to `ifname` inside namespace `ns` (the socket keeps the
// namespace it was created in; the thread returns to its own namespace before returning).
int OpenPacketSocket(const std::string& ns, const std::string& ifname, std::string* why) {
  const int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  const int target = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  if (self < 0 || target < 0) {
    *why = "cannot open namespace files for " + ns;
    if (self >= 0) close(self);
    if (target >= 0) close(target);
    return -1;
  }
  int fd = -1;
  if (setns(target, CLONE_NEWNET) == 0) {
    fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    const unsigned idx = if_nametoindex(ifname.c_str());
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = static_cast<int>(idx);
    if (fd < 0 || idx == 0 || bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
      *why = "AF_PACKET socket on " + ns + "/" + ifname + " failed";
      if (fd >= 0) close(fd);
      fd = -1;
    }
    if (setns(self, CLONE_NEWNET) != 0) std::abort();  // never stay in the test namespace
  } else {
    *why = "setns into " + ns + " failed";
  }
  close(self);
  close(target);
  return fd;
}

}  // namespace

int Sh(const std::string& cmd, std::string* out) {
  FILE* f = popen(("timeout 20 /bin/sh -c " + Quote(cmd) + " 2>&1").c_str(), "r");
  if (f == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    if (out != nullptr) out->append(buf, n);
  }
  const int st = pclose(f);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

KernelSide::~KernelSide() { Down(); }

void KernelSide::Down() {
  if (vm_fd_ >= 0) close(vm_fd_);
  if (peer_fd_ >= 0) close(peer_fd_);
  vm_fd_ = peer_fd_ = -1;
  if (keep_) return;
  for (const char* ns : {kNsVm, kNsHost, kNsPeer}) {
    Sh(std::string("ip netns del ") + ns + " 2>/dev/null");
  }
  up_ = false;
}

std::string KernelSide::Up() {
  const bool keep = keep_;
  keep_ = false;  // leftovers of an earlier run always go
  Down();
  keep_ = keep;
  const std::string h = std::string("ip -n ") + kNsHost + " ";
  const std::string hx = std::string("ip netns exec ") + kNsHost + " ";
  const std::vector<std::string> setup = {
      std::string("ip netns add ") + kNsHost,
      std::string("ip netns add ") + kNsVm,
      std::string("ip netns add ") + kNsPeer,
      // No DAD / router solicitation in the host: addresses usable at once, quiet wire.
      hx + "sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 "
           "net.ipv6.conf.all.router_solicitations=0 "
           "net.ipv6.conf.default.router_solicitations=0",
      // Frame-only endpoints: no IPv6 (no link-local, MLD, ND of their own), no IPv4 address.
      std::string("ip netns exec ") + kNsVm +
          " sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
      std::string("ip netns exec ") + kNsPeer +
          " sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1",
      h + "link set lo up",
      h + "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
      h + "link set br0 address 02:00:00:00:00:01",
      h + "link add vnet0 type veth peer name eth0 netns " + kNsVm,
      h + "link add uplink0 type veth peer name eth0 netns " + kNsPeer,
      h + "link set vnet0 address fe:54:00:00:00:02",
      h + "link set vnet0 master br0",
      h + "link set uplink0 master br0",
      h + "addr add 198.18.0.1/24 dev br0",
      h + "addr add 2001:db8::1/64 dev br0 nodad",
      h + "link set br0 up",
      h + "link set vnet0 up",
      h + "link set uplink0 up",
      h + "neigh replace 198.18.0.2 lladdr 52:54:00:00:00:02 dev br0 nud permanent",
      h + "neigh replace 2001:db8::2 lladdr 52:54:00:00:00:02 dev br0 nud permanent",
      // Bridged IPv4/IPv6 must cross iptables/ip6tables (libvirt's physdev matches).
      hx + "sysctl -qw net.bridge.bridge-nf-call-iptables=1 "
           "net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=0",
      std::string("ip -n ") + kNsVm + " link set eth0 address 52:54:00:00:00:02",
      std::string("ip -n ") + kNsVm + " link set eth0 up",
      std::string("ip -n ") + kNsPeer + " link set eth0 address 52:54:00:00:00:03",
      std::string("ip -n ") + kNsPeer + " link set eth0 up",
  };
  for (const std::string& cmd : setup) {
    std::string out;
    if (Sh(cmd, &out) != 0) return "setup failed: " + cmd + ": " + out;
  }
  up_ = true;
  // Both bridge ports must forward before the first frame (bounded: 5 s).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    std::string out;
    Sh(std::string("bridge -n ") + kNsHost + " link show", &out);
    size_t n = 0;
    for (size_t p = out.find("state forwarding"); p != std::string::npos;
         p = out.find("state forwarding", p + 1))
      ++n;
    if (n >= 2) break;
    if (std::chrono::steady_clock::now() > deadline) return "bridge ports not forwarding: " + out;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::string why;
  vm_fd_ = OpenPacketSocket(kNsVm, "eth0", &why);
  if (vm_fd_ < 0) return why;
  peer_fd_ = OpenPacketSocket(kNsPeer, "eth0", &why);
  if (peer_fd_ < 0) return why;
  return "";
}

std::string KernelSide::ReplayCommands(const std::string& commands_file) {
  std::ifstream in(commands_file);
  if (!in) return "cannot read " + commands_file;
  // One bash script: the recorded argv were written with printf %q, which bash re-parses.
  std::ostringstream script;
  script << "set +e\n";
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    const std::string cmd = line.substr(tab + 1);
    const std::string tool = cmd.substr(0, cmd.find(' '));
    if (tool != "iptables" && tool != "ip6tables" && tool != "ebtables")
      return "unexpected command in " + commands_file + ": " + cmd;
    script << "/usr/sbin/" << tool << "-nft" << cmd.substr(tool.size()) << " >/dev/null 2>&1\n";
    ++n;
  }
  if (n == 0) return "no commands in " + commands_file;
  script << "exit 0\n";  // failures are expected (clean-up probes); the saves are compared
  char path[] = "/tmp/nwfq-oracle-replay.XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return "mkstemp failed";
  const std::string text = script.str();
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  std::string out;
  const int rc = ok ? Sh(std::string("ip netns exec ") + kNsHost + " bash " + path, &out) : -1;
  unlink(path);
  if (rc != 0) return "replay script failed: " + out;
  return "";
}

std::string KernelSide::Save(const std::string& tool) {
  std::string out;
  Sh(std::string("ip netns exec ") + kNsHost + " /usr/sbin/" + tool +
         "-nft-save | grep -v -E '^# (Generated by|Completed on)'",
     &out);
  return out;
}

bool KernelSide::Inject(bool from_vm, bool watch_sender, const std::vector<uint8_t>& frame,
                        const std::function<bool(const std::vector<uint8_t>&)>& seen,
                        std::chrono::milliseconds wait, int64_t* sent_at) {
  const int tx = from_vm ? vm_fd_ : peer_fd_;
  const int rx = from_vm != watch_sender ? peer_fd_ : vm_fd_;
  // Forget what arrived before (host chatter, earlier frames).
  std::vector<uint8_t> buf(65536);
  while (recv(rx, buf.data(), buf.size(), MSG_DONTWAIT) > 0) {
  }
  *sent_at = NowMicros();
  if (send(tx, frame.data(), frame.size(), 0) != static_cast<ssize_t>(frame.size())) return false;
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{rx, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    sockaddr_ll from{};
    socklen_t len = sizeof from;
    const ssize_t got = recvfrom(rx, buf.data(), buf.size(), MSG_DONTWAIT,
                                 reinterpret_cast<sockaddr*>(&from), &len);
    if (got <= 0 || from.sll_pkttype == PACKET_OUTGOING) continue;
    if (seen(std::vector<uint8_t>(buf.begin(), buf.begin() + got))) return true;
  }
}

}  // namespace nwfq::oracle
