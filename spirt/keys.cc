#include "spirt/keys.h"

namespace p2p::spirt {

std::string RunKeys::Pattern() const {
  // Run ids are [A-Za-z0-9._-] (FinishPeerFlags), none of them a glob character.
  return prefix_ + "*";
}

}  // namespace p2p::spirt
