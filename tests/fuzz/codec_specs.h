// The codec configurations fuzz_codec_decode picks from by its first input byte (index modulo
// the count), shared with the seed generator so that its seeds name the codec that made them.
// Every codec, with the parameters that change a payload's layout.
#pragma once

#include <iterator>

namespace p2p::fuzz {

inline constexpr const char* kCodecSpecs[] = {
    "none",
    "fp16",
    "qsgd:bits=1",
    "qsgd:bits=2,bucket=64",
    "qsgd:bits=4,bucket=512",
    "qsgd:bits=8",
    "qsgd:bits=16,bucket=64",
    "qsgd-elias:code=gamma",
    "qsgd-elias:code=omega,bucket=64",
    "qsgd-elias:code=gamma,order=3,bits=4",
    "qsgd-elias:code=omega,order=15,bits=16,bucket=64",
    "qsgd-linf:bits=1,bucket=64",
    "qsgd-linf:bits=7",
    "qsgd-linf:bits=15,bucket=64",
    "uint8:mode=block,block=64",
    "uint8:mode=block",
    "uint8:mode=meanstd,k=6",
    "topk:ratio=0.01",
    "topk:ratio=1",
};
inline constexpr size_t kCodecSpecCount = std::size(kCodecSpecs);

}  // namespace p2p::fuzz
