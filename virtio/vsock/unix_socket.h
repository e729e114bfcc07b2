// Unix stream sockets for hybrid vsock: the VMM's listening socket at uds_path
// and the connections to host listeners at <uds_path>_<port>.
#pragma once

#include <sys/types.h>

#include <string>

#include "base/util/unique_fd.h"

namespace ember::virtio::vsock {

// Listens (non-blocking) at `path`. A socket file left by a process that is gone
// is replaced; a live one, or any other file, is refused. `inode` gets the socket
// file's inode, for unlink_if_same(). Throws Error.
UniqueFd listen_unix(const std::string& path, ino_t* inode);
// Connects without blocking; an invalid fd with errno set when nobody listens.
UniqueFd connect_unix(const std::string& path);
// Removes `path` if it is still the file listen_unix() created.
void unlink_if_same(const std::string& path, ino_t inode);

}  // namespace ember::virtio::vsock
