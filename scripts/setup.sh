#!/usr/bin/env bash
# Installs the Debian packages p2ptrain needs to build, test and run its demo.
# Idempotent and quiet: a no-op when everything is already present. Needs root (or sudo) only
# when something is missing. The README lists every package and what it is for.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config   # compiler and build system
  libeigen3-dev                      # ml/: tensors and GEMM
  libopenblas-dev                    # ml/: BLAS backend for Eigen's large GEMMs
  zlib1g-dev                         # ml/: reading .gz IDX files
  libcli11-dev                       # peer/: command line
  libspdlog-dev libfmt-dev           # logging and formatting
  nlohmann-json3-dev                 # metrics as JSON lines
  libgtest-dev libgmock-dev          # tests
  libbenchmark-dev                   # bench/
  dataset-fashion-mnist              # the real dataset, /usr/share/datasets/fashion-mnist
  libssl-dev                         # crypto/: RSA identity (OpenSSL 3)
  libzmq3-dev cppzmq-dev             # broker/: ZeroMQ transport
  librabbitmq-dev                    # broker/: AMQP transport (rabbitmq-c)
  libmsgpack-cxx-dev                 # broker/: envelope wire format
  rabbitmq-server                    # integration tests: a real broker on loopback
  redis-server libhiredis-dev        # store/, redis_module/: SPIRT's database per peer (docs/spirt.md)
  clang libclang-rt-14-dev           # scripts/fuzz.sh: libFuzzer, ASan, UBSan (clang 14)
  python3-yaml python3-matplotlib iproute2  # scripts/experiment: experiment files, figures, simulated hosts
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: missing packages (${missing[*]}) and not root; install them or run as root" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
