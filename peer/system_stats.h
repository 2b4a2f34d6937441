// Process resource readings for metrics.
#pragma once

namespace p2p::peer {

double PeakRssMb();     // high-water resident set size of this process, MiB
double CpuSeconds();    // user + system CPU time of this process so far
double CurrentRssMb();  // resident set size now, MiB

}  // namespace p2p::peer
