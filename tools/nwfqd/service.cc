#include "tools/nwfqd/service.h"

#include <cap-ng.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace nwfq::nwfqd {

void SdNotify(absl::string_view state) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  const size_t len = std::strlen(path);
  if (len >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path, len);
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  (void)sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr),
               static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len));
  close(fd);
}

absl::Status DropCapabilities() {
  // Changing the bounding set needs CAP_SETPCAP; without it (systemd's
  // CapabilityBoundingSet= already limited it) only the process's own sets are changed.
  capng_get_caps_process();
  const capng_select_t what =
      capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) ? CAPNG_SELECT_BOTH : CAPNG_SELECT_CAPS;
  capng_clear(CAPNG_SELECT_BOTH);
  if (capng_updatev(
          CAPNG_ADD,
          static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET),
          CAP_NET_ADMIN, CAP_NET_RAW, -1) != 0) {
    return absl::InternalError("capng_updatev failed");
  }
  if (const int rc = capng_apply(what); rc != 0) {
    return absl::PermissionDeniedError(absl::StrCat("capng_apply failed (", rc, ")"));
  }
  return absl::OkStatus();
}

}  // namespace nwfq::nwfqd
