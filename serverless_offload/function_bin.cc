// p2ptrain-function: the function process started by the `process` backend. A separate, small
// executable (only ml/ and this library) so a cold start is just exec + a few libraries — the
// full p2ptrain binary links ZeroMQ, RabbitMQ, OpenSSL and the CLI and starts several times slower.
// `p2ptrain function` runs the same code for environments that ship only one binary.
#include <unistd.h>

#include <cstdio>

#include "serverless_offload/function_main.h"

int main() {
  const p2p::Status s = p2p::offload::ServeTasks(STDIN_FILENO, STDOUT_FILENO);
  if (s.ok()) return 0;
  std::fprintf(stderr, "p2ptrain-function: %s\n", s.message().c_str());
  return 1;
}
