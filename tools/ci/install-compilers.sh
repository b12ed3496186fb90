#!/usr/bin/env bash
# Installs the run-time kernel compilers that rocmforge's tests use on a machine with no GPU
# (CI and developer machines, Debian 12 / Ubuntu):
#   HIPRTC (ROCm 5.2, compiles gfx90a / gfx1030): apt packages libamdhip64-dev,
#     libhiprtc-builtins5, rocm-device-libs;
#   NVRTC 13 (compiles sm_90) and the CUDA headers (cuda_fp16.h): PyPI wheels
#     nvidia-cuda-nvrtc and nvidia-cuda-runtime.
# Then prints the environment to export (the same as `. tools/ci/env.sh`) and, under GitHub
# Actions, appends it to $GITHUB_ENV for the following steps.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
apt_packages=(libamdhip64-dev libhiprtc-builtins5 rocm-device-libs)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for package in "${apt_packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep "install ok installed" > /dev/null; then
        missing+=("$package")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} (apt)"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "HIPRTC packages already installed: ${apt_packages[*]}"
fi

echo "installing nvidia-cuda-nvrtc, nvidia-cuda-runtime, nvidia-cuda-crt 13.x (pip; crt has the tensor-core header crt/mma.h)"
python3 -m pip install --quiet --disable-pip-version-check "nvidia-cuda-nvrtc==13.*" "nvidia-cuda-runtime==13.*" "nvidia-cuda-crt==13.*"

# shellcheck source=env.sh
. "$here/env.sh"

fail=0
# grep reads all of ldconfig's output (no -q): stopping at the first match would kill
# ldconfig with SIGPIPE, and pipefail would then report the library as missing.
if ! ldconfig -p | grep -E 'libhiprtc\.so|libamdhip64\.so' > /dev/null; then
    echo "error: no libhiprtc / libamdhip64 on the loader's path" >&2
    fail=1
fi
for file in "${ROCMFORGE_NVRTC_LIB:-/missing}" "${ROCMFORGE_CUDA_INCLUDE:-/missing}/cuda_fp16.h" \
    "${ROCMFORGE_CUDA_INCLUDE:-/missing}/crt/mma.h"; do
    if [ ! -f "$file" ]; then
        echo "error: $file is missing" >&2
        fail=1
    fi
done
if [ "$fail" -ne 0 ]; then exit 1; fi

exports=(
    "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    "ROCMFORGE_NVRTC_LIB=$ROCMFORGE_NVRTC_LIB"
    "ROCMFORGE_CUDA_INCLUDE=$ROCMFORGE_CUDA_INCLUDE"
    "ROCMFORGE_REQUIRE_COMPILERS=1"
)
echo "compilers ready; export (or \`. tools/ci/env.sh\`):"
for line in "${exports[@]}"; do
    echo "  export $line"
    if [ -n "${GITHUB_ENV:-}" ]; then echo "$line" >> "$GITHUB_ENV"; fi
done
