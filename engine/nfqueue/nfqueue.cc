#include "engine/nfqueue/nfqueue.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

// libnetfilter_queue's netlink helpers (nfq_nlmsg_*) only; its old nfq_handle API is not
// used. The header is C and not self-contained.
extern "C" {
#include <libnetfilter_queue/libnetfilter_queue.h>
}

namespace nwfq::nfq {
namespace {

// nlmsghdr + nfgenmsg + NFQA_VERDICT_HDR attribute, with room to spare.
constexpr size_t kVerdictMsgMax = 64;

absl::Status Errno(const char* what, int err) {
  return absl::Status(err == EPERM || err == EACCES ? absl::StatusCode::kPermissionDenied
                                                    : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", strerror(err)));
}

}  // namespace

bool Packet::checksum_not_ready() const { return (skb_info & NFQA_SKB_CSUMNOTREADY) != 0; }

Queue::Queue(const QueueOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Queue>> Queue::Open(const QueueOptions& options) {
  if (options.batch < 1 || options.batch > 4096)
    return absl::InvalidArgumentError("batch must be in [1, 4096]");
  if (options.copy_range < 64 || options.copy_range > 0xffff)
    return absl::InvalidArgumentError("copy range must be in [64, 65535]");
  std::unique_ptr<Queue> q(new Queue(options));
  q->nl_ = mnl_socket_open(NETLINK_NETFILTER);
  if (q->nl_ == nullptr) return Errno("netlink socket", errno);
  if (mnl_socket_bind(q->nl_, 0, MNL_SOCKET_AUTOPID) < 0) return Errno("netlink bind", errno);
  q->portid_ = mnl_socket_get_portid(q->nl_);
  const int fd = mnl_socket_get_fd(q->nl_);
  // A large receive buffer absorbs bursts; FORCE ignores rmem_max (needs CAP_NET_ADMIN).
  int bytes = options.receive_buffer_bytes;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) != 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  // An overrun must not turn into a socket error that stops the loop: the kernel counts
  // the lost packets (user_dropped in /proc/net/netfilter/nfnetlink_queue) instead.
  int one = 1;
  (void)mnl_socket_setsockopt(q->nl_, NETLINK_NO_ENOBUFS, &one, sizeof(one));

  // Buffers, allocated once: a slot holds one message (headers + attributes + payload).
  q->slot_size_ = options.copy_range + 4096;
  q->rx_ = std::make_unique<uint8_t[]>(q->slot_size_ * options.batch);
  q->iov_ = std::make_unique<iovec[]>(options.batch);
  q->msgs_ = std::make_unique<mmsghdr[]>(options.batch);
  for (int i = 0; i < options.batch; ++i) {
    q->iov_[i] = {q->rx_.get() + i * q->slot_size_, q->slot_size_};
    q->msgs_[i] = {};
    q->msgs_[i].msg_hdr.msg_iov = &q->iov_[i];
    q->msgs_[i].msg_hdr.msg_iovlen = 1;
  }
  q->tx_capacity_ = kVerdictMsgMax * options.batch;
  q->tx_ = std::make_unique<uint8_t[]>(q->tx_capacity_);

  if (absl::Status st = q->Bind(); !st.ok()) return st;
  return q;
}

// One config message: bind, copy mode and range, queue length, flags; acknowledged, so a
// queue held by another process or a missing permission is reported here.
absl::Status Queue::Bind() {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, options_.queue_num);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
  nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, static_cast<int>(options_.copy_range));
  nfq_nlmsg_cfg_put_qmaxlen(nlh, options_.max_len);
  uint32_t flags = 0;
  if (options_.gso) flags |= NFQA_CFG_F_GSO;
  if (options_.fail_open) flags |= NFQA_CFG_F_FAIL_OPEN;
  mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
  mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
  nlh->nlmsg_flags |= NLM_F_ACK;
  const uint32_t seq = static_cast<uint32_t>(time(nullptr));
  nlh->nlmsg_seq = seq;
  if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) return Errno("netlink send", errno);
  // Steering is installed only after Open returns, so nothing but the ack arrives here.
  ssize_t n = mnl_socket_recvfrom(nl_, buf, sizeof(buf));
  if (n < 0) return Errno("netlink receive", errno);
  if (mnl_cb_run(buf, static_cast<size_t>(n), seq, portid_, nullptr, nullptr) < 0) {
    const int err = errno;
    return Errno(absl::StrCat("binding NFQUEUE ", options_.queue_num,
                              err == EPERM || err == EBUSY
                                  ? " (held by another process, or CAP_NET_ADMIN missing)"
                                  : "")
                     .c_str(),
                 err);
  }
  return absl::OkStatus();
}

Queue::~Queue() {
  if (nl_ == nullptr) return;
  char buf[256];
  nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, options_.queue_num);
  nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_UNBIND);
  (void)mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len);
  mnl_socket_close(nl_);
}

int Queue::fd() const { return mnl_socket_get_fd(nl_); }

void Queue::Release(uint32_t id, Verdict verdict) {
  AppendVerdict(id, verdict == Verdict::kHold ? Verdict::kDrop : verdict);
}

void Queue::FlushVerdicts() {
  if (tx_len_ == 0) return;
  if (mnl_socket_sendto(nl_, tx_.get(), tx_len_) < 0) ++counters_.send_errors;
  tx_len_ = 0;
}

void Queue::AppendVerdict(uint32_t id, Verdict verdict) {
  if (tx_len_ + kVerdictMsgMax > tx_capacity_) {  // more messages than slots: flush early
    if (mnl_socket_sendto(nl_, tx_.get(), tx_len_) < 0) ++counters_.send_errors;
    tx_len_ = 0;
  }
  nlmsghdr* nlh = nfq_nlmsg_put(reinterpret_cast<char*>(tx_.get() + tx_len_), NFQNL_MSG_VERDICT,
                                options_.queue_num);
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(id),
                        verdict == Verdict::kAccept ? NF_ACCEPT : NF_DROP);
  tx_len_ += MNL_ALIGN(nlh->nlmsg_len);
  if (verdict == Verdict::kAccept) {
    ++counters_.accepted;
  } else {
    ++counters_.dropped;
  }
}

void Queue::HandleDatagram(const uint8_t* data, size_t len, Handler handler) {
  int left = static_cast<int>(len);
  auto* nlh = reinterpret_cast<nlmsghdr*>(const_cast<uint8_t*>(data));
  for (; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
    if (nlh->nlmsg_type != ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) continue;  // acks etc.
    nlattr* attr[NFQA_MAX + 1] = {};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == nullptr) {
      ++counters_.bad_messages;  // no packet id: the kernel keeps it until the queue goes
      continue;
    }
    Packet p;
    const auto* ph =
        static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
    p.id = ntohl(ph->packet_id);
    p.hw_protocol = ntohs(ph->hw_protocol);
    p.hook = ph->hook;
    auto ifindex = [&](int type) -> uint32_t {
      return attr[type] != nullptr ? ntohl(mnl_attr_get_u32(attr[type])) : 0;
    };
    p.indev = ifindex(NFQA_IFINDEX_INDEV);
    p.outdev = ifindex(NFQA_IFINDEX_OUTDEV);
    p.physindev = ifindex(NFQA_IFINDEX_PHYSINDEV);
    p.physoutdev = ifindex(NFQA_IFINDEX_PHYSOUTDEV);
    if (attr[NFQA_PAYLOAD] != nullptr) {
      p.payload = {static_cast<const uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD])),
                   mnl_attr_get_payload_len(attr[NFQA_PAYLOAD])};
    }
    p.wire_len = attr[NFQA_CAP_LEN] != nullptr ? ntohl(mnl_attr_get_u32(attr[NFQA_CAP_LEN]))
                                               : static_cast<uint32_t>(p.payload.size());
    if (p.wire_len > p.payload.size()) ++counters_.truncated;
    if (attr[NFQA_HWADDR] != nullptr) {
      const auto* hw =
          static_cast<const nfqnl_msg_packet_hw*>(mnl_attr_get_payload(attr[NFQA_HWADDR]));
      if (ntohs(hw->hw_addrlen) == 6) {
        std::array<uint8_t, 6> mac;
        std::memcpy(mac.data(), hw->hw_addr, 6);
        p.hwaddr = mac;
      }
    }
    p.skb_info = ifindex(NFQA_SKB_INFO);
    ++counters_.packets;
    const Verdict v = handler(p);
    if (v == Verdict::kHold) {
      ++counters_.held;
    } else {
      AppendVerdict(p.id, v);
    }
  }
}

absl::StatusOr<int> Queue::ProcessBatch(int timeout_ms, Handler handler) {
  const int fd = mnl_socket_get_fd(nl_);
  pollfd pfd = {fd, POLLIN, 0};
  int pr = poll(&pfd, 1, timeout_ms);
  if (pr == 0 || (pr < 0 && errno == EINTR)) return 0;
  if (pr < 0) return Errno("poll", errno);
  for (int i = 0; i < options_.batch; ++i) {
    msgs_[i].msg_len = 0;
    msgs_[i].msg_hdr.msg_flags = 0;
  }
  int n = recvmmsg(fd, msgs_.get(), static_cast<unsigned>(options_.batch), MSG_DONTWAIT, nullptr);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return 0;
    if (errno == ENOBUFS) {  // only if NETLINK_NO_ENOBUFS was refused: count and go on
      ++counters_.enobufs;
      return 0;
    }
    ++counters_.recv_errors;
    return Errno("netlink receive", errno);
  }
  const uint64_t before = counters_.packets;
  for (int i = 0; i < n; ++i) {
    if ((msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0) {
      ++counters_.bad_messages;  // cannot happen with slot = copy range + 4 KiB headroom
      continue;
    }
    HandleDatagram(rx_.get() + i * slot_size_, msgs_[i].msg_len, handler);
  }
  if (tx_len_ > 0) {
    if (mnl_socket_sendto(nl_, tx_.get(), tx_len_) < 0) ++counters_.send_errors;
    tx_len_ = 0;
  }
  ++counters_.batches;
  return static_cast<int>(counters_.packets - before);
}

absl::StatusOr<KernelQueueStats> ReadKernelQueueStats(uint16_t queue_num) {
  FILE* f = std::fopen("/proc/net/netfilter/nfnetlink_queue", "r");
  if (f == nullptr) return Errno("/proc/net/netfilter/nfnetlink_queue", errno);
  unsigned num, portid, total, mode, range, qdrop, udrop, last_id;
  int one;
  absl::StatusOr<KernelQueueStats> result =
      absl::NotFoundError(absl::StrCat("queue ", queue_num, " is not bound"));
  while (std::fscanf(f, "%u %u %u %u %u %u %u %u %d", &num, &portid, &total, &mode, &range, &qdrop,
                     &udrop, &last_id, &one) == 9) {
    if (num == queue_num) {
      result = KernelQueueStats{total, qdrop, udrop, last_id};
      break;
    }
  }
  std::fclose(f);
  return result;
}

}  // namespace nwfq::nfq
