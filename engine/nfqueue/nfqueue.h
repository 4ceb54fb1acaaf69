// NFQUEUE I/O adaptor: the only code in nwfq that talks netlink. Binds one kernel queue
// (nfnetlink_queue) with libmnl + libnetfilter_queue, receives queued packets in batches and
// sends their verdicts back packed into one netlink write per batch.
//
// Ownership: a Queue owns its socket and its receive/verdict buffers (allocated once in
// Open; nothing is allocated per packet). Packet views point into the receive buffer and
// are valid only during the handler call.
// Threading: one Queue per worker thread; a Queue is not thread-safe.
// Byte order: every field of Packet is in host order except `payload` (wire bytes).
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

struct mnl_socket;

namespace nwfq::nfq {

struct QueueOptions {
  uint16_t queue_num = 0;
  // Bytes of each packet copied to userspace: enough for IPv6 extension headers, TCP
  // options and the quote of an ICMP error; the rest of a long packet stays in the kernel.
  uint32_t copy_range = 512;
  uint32_t max_len = 4096;             // kernel-side queue length (packets)
  int receive_buffer_bytes = 8 << 20;  // SO_RCVBUFFORCE (root), else SO_RCVBUF
  bool fail_open = false;              // NFQA_CFG_F_FAIL_OPEN: accept when queue is full
  bool gso = true;                     // NFQA_CFG_F_GSO: do not segment GSO packets
  int batch = 64;                      // packets per receive batch (and verdict write)
};

// Netfilter hooks (NF_INET_*) as reported in the packet header.
inline constexpr uint8_t kHookLocalIn = 1;
inline constexpr uint8_t kHookForward = 2;

// One queued packet. Interface indices are in the queue owner's network namespace; 0 means
// the attribute was absent.
struct Packet {
  uint32_t id = 0;
  uint16_t hw_protocol = 0;  // ethertype (0x0800, 0x86dd)
  uint8_t hook = 0;          // kHookLocalIn, kHookForward, ...
  uint32_t indev = 0;
  uint32_t outdev = 0;
  uint32_t physindev = 0;            // bridge port the packet entered by (bridged traffic)
  uint32_t physoutdev = 0;           // bridge port it leaves by
  std::span<const uint8_t> payload;  // network-layer packet, at most copy_range bytes
  uint32_t wire_len = 0;             // full length of the packet (>= payload.size())
  std::optional<std::array<uint8_t, 6>> hwaddr;  // source MAC (NFQA_HWADDR)
  uint32_t skb_info = 0;                         // NFQA_SKB_* bits
  bool checksum_not_ready() const;               // NFQA_SKB_CSUMNOTREADY (offloaded)
};

// kHold (added by the defrag developer): no verdict now; the handler's owner gives it
// later with Queue::Release() (an IP fragment waiting for the rest of its datagram). The
// kernel keeps the packet queued meanwhile; verdicts are individual NFQNL_MSG_VERDICT
// messages, so any order is fine.
enum class Verdict : uint8_t { kAccept, kDrop, kHold };

// Monotonic per-queue counters (read them from the owning thread).
struct Counters {
  uint64_t packets = 0;
  uint64_t accepted = 0;
  uint64_t dropped = 0;
  uint64_t batches = 0;
  uint64_t truncated = 0;     // packets longer than copy_range
  uint64_t bad_messages = 0;  // netlink messages we could not parse (no verdict possible)
  uint64_t enobufs = 0;       // receive overruns reported despite NETLINK_NO_ENOBUFS
  uint64_t recv_errors = 0;   // other receive errors (EINTR excluded)
  uint64_t send_errors = 0;   // verdict writes that failed
  uint64_t held = 0;          // packets the handler held (kHold); released ones count
                              // in accepted / dropped when their verdict is sent
};

// The kernel's view of one queue (/proc/net/netfilter/nfnetlink_queue, in the caller's
// network namespace): packets lost because the queue was full or the socket overran.
struct KernelQueueStats {
  uint32_t waiting = 0;
  uint32_t queue_dropped = 0;  // queue full (with fail-open these were accepted instead)
  uint32_t user_dropped = 0;   // netlink socket overrun (our receive buffer was full)
  uint32_t last_id = 0;
};
absl::StatusOr<KernelQueueStats> ReadKernelQueueStats(uint16_t queue_num);

class Queue {
 public:
  using Handler = absl::FunctionRef<Verdict(const Packet&)>;

  // Opens a netlink socket and binds queue `options.queue_num`. Fails (with the reason)
  // when not permitted or when another process already holds the queue.
  static absl::StatusOr<std::unique_ptr<Queue>> Open(const QueueOptions& options);
  ~Queue();  // unbinds the queue; the kernel then drops (or with fail-open accepts) its packets
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;

  // Waits up to `timeout_ms` (-1 = forever) for packets, then receives up to
  // options.batch of them without blocking, calls `handler` once per packet in arrival
  // order, and writes all verdicts in one send. Returns the number of packets handled
  // (0 on timeout or EINTR).
  absl::StatusOr<int> ProcessBatch(int timeout_ms, Handler handler);

  // The verdict of a packet held earlier (kHold): queued with the batch's verdicts, or
  // sent by FlushVerdicts() when called outside ProcessBatch.
  void Release(uint32_t id, Verdict verdict);
  void FlushVerdicts();

  int fd() const;
  const Counters& counters() const { return counters_; }
  const QueueOptions& options() const { return options_; }

 private:
  explicit Queue(const QueueOptions& options);
  absl::Status Bind();
  // Parses one netlink datagram; appends verdicts to the verdict buffer.
  void HandleDatagram(const uint8_t* data, size_t len, Handler handler);
  void AppendVerdict(uint32_t id, Verdict verdict);

  QueueOptions options_;
  mnl_socket* nl_ = nullptr;
  uint32_t portid_ = 0;
  size_t slot_size_ = 0;             // bytes per receive slot
  std::unique_ptr<uint8_t[]> rx_;    // batch * slot_size_
  std::unique_ptr<iovec[]> iov_;     // one per receive slot
  std::unique_ptr<mmsghdr[]> msgs_;  // recvmmsg descriptors, one per slot
  std::unique_ptr<uint8_t[]> tx_;    // packed verdict messages
  size_t tx_capacity_ = 0;
  size_t tx_len_ = 0;
  Counters counters_;
};

}  // namespace nwfq::nfq
