// nwfqctl's control subcommands: talk to a running nwfqd over its control socket
// (protocol: tools/nwfqd/control.h; one request line, then `ok`/`error` and the body).
//
//   status | reload | counters | conntrack list|stats|flush | timeout get|set|reset | trace
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/nwfqctl/command_registry.h"

namespace nwfq::ctl {
namespace {

// Sends `request`, copies the body to stdout (ok) or stderr (error) as it arrives.
// Returns 0 for ok, 1 for error, 2 when nwfqd cannot be reached.
int Request(const std::string& path, const std::string& request) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "nwfqctl: control socket path too long\n");
    return 2;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::fprintf(stderr,
                 "nwfqctl: cannot reach nwfqd at %s: %s\n(is nwfqd running with --control %s, "
                 "and are you root in its network namespace? see --control)\n",
                 path.c_str(), std::strerror(errno), path.c_str());
    if (fd >= 0) close(fd);
    return 2;
  }
  const std::string line = request + "\n";
  if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    std::fprintf(stderr, "nwfqctl: sending the request: %s\n", std::strerror(errno));
    close(fd);
    return 2;
  }
  std::string head;
  int status = -1;  // -1 until the status line is in
  char buf[4096];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::string chunk(buf, static_cast<size_t>(n));
    if (status < 0) {
      head += chunk;
      const size_t nl = head.find('\n');
      if (nl == std::string::npos) continue;
      status = head.substr(0, nl) == "ok" ? 0 : 1;
      chunk = head.substr(nl + 1);
    }
    std::FILE* out = status == 0 ? stdout : stderr;
    std::fwrite(chunk.data(), 1, chunk.size(), out);
    std::fflush(out);  // trace streams: show each line as it comes
  }
  close(fd);
  if (status < 0) {
    std::fprintf(stderr, "nwfqctl: nwfqd closed the connection without an answer\n");
    return 2;
  }
  return status;
}

std::string Join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) {
    if (!out.empty()) out += ' ';
    out += w;
  }
  return out;
}

// --binding / --json as request words.
struct Common {
  std::string binding;
  bool json = false;
  std::string Words() const {
    std::string s;
    if (!binding.empty()) s += " --binding " + binding;
    if (json) s += " --json";
    return s;
  }
};

const bool registered =
    RegisterCommands(40, [](CLI::App& app, const GlobalOptions& globals, int* exit_code) {
      const std::string group = "Control of a running nwfqd (through --control)";
      auto send = [&globals, exit_code](const std::string& request) {
        *exit_code = Request(globals.control_path, request);
      };

      app.add_subcommand("status", "nwfqd's state: queues, bindings, counters, last reload")
          ->group(group)
          ->callback([send] { send("status"); });

      app.add_subcommand("reload",
                         "re-read the filters and bindings; an invalid set is refused with "
                         "file:line and the old policy stays (same as SIGHUP)")
          ->group(group)
          ->callback([send] { send("reload"); });

      auto counters_opts = std::make_shared<Common>();
      auto counters_all = std::make_shared<bool>(false);
      CLI::App* counters = app.add_subcommand(
          "counters", "per-rule packet/byte counters with filter and file:line, per binding");
      counters->group(group);
      counters->add_option("--binding", counters_opts->binding, "only this tap (portdev)");
      counters->add_flag("--json", counters_opts->json, "one JSON array");
      counters->add_flag("--all", *counters_all, "also rules that never matched");
      counters->callback([send, counters_opts, counters_all] {
        send("counters" + counters_opts->Words() + (*counters_all ? " --all" : ""));
      });

      CLI::App* conntrack = app.add_subcommand("conntrack", "nwfqd's connection tables");
      conntrack->group(group);
      conntrack->require_subcommand(1);
      for (auto [name, help] : {std::pair{"list", "connections, conntrack -L style (per binding)"},
                                std::pair{"stats", "table statistics per binding (conntrack -S)"},
                                std::pair{"flush", "remove every connection (conntrack -F)"}}) {
        auto opts = std::make_shared<Common>();
        CLI::App* sub = conntrack->add_subcommand(name, help);
        sub->add_option("--binding", opts->binding, "only this tap (portdev)");
        if (std::string(name) != "flush") sub->add_flag("--json", opts->json, "JSON output");
        const std::string words = std::string("conntrack ") + name;
        sub->callback([send, opts, words] { send(words + opts->Words()); });
      }

      CLI::App* timeout = app.add_subcommand(
          "timeout", "conntrack timeouts, global or per binding; changes apply at once");
      timeout->group(group);
      timeout->require_subcommand(1);
      {
        auto opts = std::make_shared<Common>();
        auto name = std::make_shared<std::string>();
        CLI::App* get = timeout->add_subcommand("get", "show one or all timeouts (* = overridden)");
        get->add_option("NAME", *name, "e.g. icmp, tcp/established, udp/stream");
        get->add_option("--binding", opts->binding, "the binding's own policy");
        get->callback([send, opts, name] { send("timeout get " + *name + opts->Words()); });
      }
      {
        auto opts = std::make_shared<Common>();
        auto name = std::make_shared<std::string>();
        auto seconds = std::make_shared<unsigned>(0);
        CLI::App* set = timeout->add_subcommand("set", "set PROTO[/STATE] SECONDS, e.g. `icmp 3`");
        set->add_option("NAME", *name, "e.g. icmp, tcp/established, udp/stream")->required();
        set->add_option("SECONDS", *seconds, "new timeout")->required();
        set->add_option("--binding", opts->binding, "only this binding (default: global)");
        set->callback([send, opts, name, seconds] {
          send("timeout set " + *name + " " + std::to_string(*seconds) + opts->Words());
        });
      }
      {
        auto opts = std::make_shared<Common>();
        auto name = std::make_shared<std::string>();
        CLI::App* reset = timeout->add_subcommand("reset", "back to the inherited/kernel default");
        reset->add_option("NAME", *name, "e.g. icmp")->required();
        reset->add_option("--binding", opts->binding, "only this binding (default: global)");
        reset->callback([send, opts, name] { send("timeout reset " + *name + opts->Words()); });
      }

      auto count = std::make_shared<int>(0);
      auto rate = std::make_shared<int>(10);
      auto seconds = std::make_shared<int>(0);
      auto expr = std::make_shared<std::vector<std::string>>();
      CLI::App* trace = app.add_subcommand(
          "trace",
          "live verdict explanations for matching packets (rate-limited; Ctrl-C stops).\n"
          "EXPR words (all must hold): proto tcp|udp|icmp|icmpv6|N, port N, host ADDR, src ADDR,\n"
          "dst ADDR, binding DEV, view from-vm|to-vm|to-host. Example: trace proto icmp");
      trace->group(group);
      trace->add_option("--count", *count, "stop after N packets (0 = until Ctrl-C)");
      trace->add_option("--rate", *rate, "at most N packets per second")->capture_default_str();
      trace->add_option("--seconds", *seconds, "stop after N seconds (0 = until Ctrl-C)");
      trace->add_option("EXPR", *expr, "filter expression");
      trace->callback([send, count, rate, seconds, expr] {
        std::string req = "trace --rate " + std::to_string(*rate);
        if (*count > 0) req += " --count " + std::to_string(*count);
        if (*seconds > 0) req += " --seconds " + std::to_string(*seconds);
        if (!expr->empty()) req += " " + Join(*expr);
        send(req);
      });
    });

}  // namespace
}  // namespace nwfq::ctl
