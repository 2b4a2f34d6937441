// Where the other peers' databases are, and their passwords: the store directory file
// (`p2ptrain peer --store-peers FILE`). One line per rank:
//
//   <rank> <store URL> [<password file>]      # comments and blank lines are ignored
//
// The passwords stay in their own files (mode 0600, as `launch --store redis` writes them); the
// directory only names them, so neither is ever on a command line or on the wire. This is the
// simple form of distributing credentials: the issue asks for them inside the authenticated join
// (docs/spirt.md says what is missing).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "store/client.h"

namespace p2p::spirt {

// Connect options of every rank 0..size-1, in rank order. InvalidArgument naming the file and the
// line for a malformed line, a rank out of range or given twice, or a rank missing; IoError for a
// file (directory or password file) that cannot be read.
Result<std::vector<store::ConnectOptions>> ReadStoreDirectory(const std::string& path, int size);

}  // namespace p2p::spirt
