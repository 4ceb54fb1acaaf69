// nwfqd's control protocol (control.h) over a real Unix socket, the trace filter
// expression and the worker pause gate.
#include "tools/nwfqd/control.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "engine/packet_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/packet_builder.h"
#include "tools/nwfqd/gate.h"
#include "tools/nwfqd/trace.h"

namespace nwfq::nwfqd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// One request over the socket; returns everything nwfqd sent.
std::string Ask(const std::string& path, const std::string& line) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  (void)send(fd, line.data(), line.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nwfqd-control-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/sub/nwfqd.sock";  // the directory is created by Open
    absl::StatusOr<std::unique_ptr<ControlServer>> s = ControlServer::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
    server_->Start(
        [](const std::vector<std::string>& args, Reply& reply) {
          if (args[0] == "echo") return reply.Ok(absl::StrJoin(args, "|") + "\n");
          if (args[0] == "fail") return reply.Error("it failed\nfile.xml:3: why");
          if (args[0] == "stream") {
            for (int i = 0; i < 3; ++i) reply.Write("line " + std::to_string(i) + "\n");
            return;
          }
          if (args[0] == "silent") return;
          reply.Error("unknown");
        },
        nullptr);
  }
  void TearDown() override {
    server_.reset();
    rmdir((dir_ + "/sub").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_, path_;
  std::unique_ptr<ControlServer> server_;
};

TEST_F(ControlServerTest, SocketIsPrivate) {
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ControlServerTest, AnswersStatusLineThenBody) {
  if (geteuid() != 0) {
    // The server checks the peer: only root may talk to it.
    EXPECT_EQ(Ask(path_, "echo a\n"),
              "error\npermission denied: the control socket is for root only\n");
    return;
  }
  EXPECT_EQ(Ask(path_, "echo a  b\tc\n"), "ok\necho|a|b|c\n");
  EXPECT_EQ(Ask(path_, "fail\n"), "error\nit failed\nfile.xml:3: why\n");
  EXPECT_EQ(Ask(path_, "stream\n"), "ok\nline 0\nline 1\nline 2\n");
  EXPECT_EQ(Ask(path_, "silent\n"), "ok\n");
  EXPECT_EQ(Ask(path_, "\n"), "error\nempty request (try `help`)\n");
  EXPECT_EQ(Ask(path_, std::string(5000, 'x')), "error\nrequest line longer than 4096 bytes\n");
}

TEST_F(ControlServerTest, SecondServerOnALiveSocketIsRefused) {
  absl::StatusOr<std::unique_ptr<ControlServer>> again = ControlServer::Open(path_);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("another nwfqd is listening"));
}

TEST(ControlServerOpenTest, RefusesAFileThatIsNotASocket) {
  char tmpl[] = "/tmp/nwfqd-control-file.XXXXXX";
  const int fd = mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  close(fd);
  absl::StatusOr<std::unique_ptr<ControlServer>> s = ControlServer::Open(tmpl);
  EXPECT_FALSE(s.ok());
  struct stat st;
  EXPECT_EQ(stat(tmpl, &st), 0) << "the file must be left alone";
  unlink(tmpl);
}

TEST(SplitRequestTest, Words) {
  EXPECT_THAT(SplitRequest("  conntrack  list\t--json \r"),
              ElementsAre("conntrack", "list", "--json"));
  EXPECT_TRUE(SplitRequest(" \t ").empty());
}

// ---- trace filter ----

engine::PacketView View(const std::vector<uint8_t>& packet) {
  return engine::ParseNetwork(packet, 0x0800, {.verify_checksums = false});
}

TEST(TraceFilterTest, ParseErrors) {
  for (std::vector<std::string> words : {std::vector<std::string>{"proto"},
                                         {"proto", "nope"},
                                         {"port", "70000"},
                                         {"host", "not-an-ip"},
                                         {"view", "sideways"},
                                         {"colour", "red"}}) {
    EXPECT_FALSE(TraceFilter::Parse(words).ok()) << absl::StrJoin(words, " ");
  }
}

struct MatchRow {
  std::vector<std::string> expr;
  bool tcp_packet_matches;  // tcp 198.18.0.3:40000 > 198.18.0.2:22 on vnet0, to-vm
};

TEST(TraceFilterTest, MatchRows) {
  const std::vector<uint8_t> frame = testing::PacketBuilder()
                                         .Ipv4("198.18.0.3", "198.18.0.2")
                                         .Tcp(40000, 22, ct::kTcpSyn)
                                         .BuildNetwork();
  const engine::PacketView v = View(frame);
  ASSERT_EQ(v.l4proto, engine::kProtoTcp);
  const MatchRow rows[] = {
      {{}, true},
      {{"proto", "tcp"}, true},
      {{"proto", "6"}, true},
      {{"proto", "icmp"}, false},
      {{"port", "22"}, true},
      {{"port", "40000"}, true},
      {{"port", "23"}, false},
      {{"host", "198.18.0.3"}, true},
      {{"host", "198.18.0.2"}, true},
      {{"host", "198.18.0.4"}, false},
      {{"src", "198.18.0.3"}, true},
      {{"src", "198.18.0.2"}, false},
      {{"dst", "198.18.0.2"}, true},
      {{"host", "2001:db8::3"}, false},
      {{"binding", "vnet0"}, true},
      {{"binding", "vnet1"}, false},
      {{"view", "to-vm"}, true},
      {{"view", "from-vm"}, false},
      {{"proto", "tcp", "and", "port", "22", "and", "host", "198.18.0.3"}, true},
      {{"proto", "tcp", "port", "23"}, false},
  };
  for (const MatchRow& r : rows) {
    absl::StatusOr<TraceFilter> f = TraceFilter::Parse(r.expr);
    ASSERT_TRUE(f.ok()) << absl::StrJoin(r.expr, " ") << ": " << f.status();
    EXPECT_EQ(f->Matches(v, "vnet0", engine::View::kToVm), r.tcp_packet_matches)
        << absl::StrJoin(r.expr, " ");
  }
}

TEST(TracerTest, OneSessionAtATime) {
  Tracer t;
  EXPECT_FALSE(t.active());
  ASSERT_TRUE(t.Begin({}, 10).ok());
  EXPECT_TRUE(t.active());
  EXPECT_FALSE(t.Begin({}, 10).ok());
  t.End();
  EXPECT_FALSE(t.active());
  EXPECT_TRUE(t.Begin({}, 10).ok());
  t.End();
}

TEST(TracerTest, LinesReachTheSession) {
  Tracer t;
  ASSERT_TRUE(t.Begin({}, 1000).ok());
  t.Emit("a\n");
  t.Emit("b\n");
  uint64_t skipped = 7;
  EXPECT_THAT(t.Take(absl::ZeroDuration(), &skipped), ElementsAre("a\n", "b\n"));
  EXPECT_EQ(skipped, 0u);
  t.End();
  t.Emit("after end\n");  // dropped: no session
  EXPECT_TRUE(t.Take(absl::ZeroDuration(), nullptr).empty());
}

// ---- gate ----

// Workers bump a plain (non-atomic) counter between checkpoints; Run() reads and changes
// it. With the gate working, every Run sees a value no worker is writing, and the
// workers' increments are never lost (TSan would flag a race; the totals show lost
// updates).
TEST(GateTest, RunSeesParkedWorkers) {
  Gate gate;
  std::atomic<bool> stop{false};
  std::atomic<int> inside{0};  // workers between two checkpoints
  long long counter = 0;       // touched by workers only between checkpoints
  std::atomic<long long> worker_increments{0};
  std::vector<std::thread> workers;
  std::mutex counter_mu;  // workers among themselves (the gate orders them vs Run only)
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&] {
      GateMember member(gate);
      while (!stop.load()) {
        gate.Checkpoint();
        inside.fetch_add(1);
        {
          std::lock_guard<std::mutex> lock(counter_mu);
          ++counter;
        }
        worker_increments.fetch_add(1);
        inside.fetch_sub(1);
      }
    });
  }
  int runs_with_busy_workers = 0;
  long long added_by_runs = 0;
  for (int i = 0; i < 200; ++i) {
    gate.Run([&] {
      if (inside.load() != 0) ++runs_with_busy_workers;
      counter += 1000;
      added_by_runs += 1000;
    });
  }
  stop.store(true);
  for (std::thread& t : workers) t.join();
  EXPECT_EQ(runs_with_busy_workers, 0);
  EXPECT_EQ(counter, worker_increments.load() + added_by_runs);
}

TEST(GateTest, RunWithoutWorkersRunsAtOnce) {
  Gate gate;
  bool ran = false;
  gate.Run([&] { ran = true; });
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace nwfq::nwfqd
