# Source this file (`. tools/ci/env.sh`) to point rocmforge and its tests at the run-time kernel
# compilers that tools/ci/install-compilers.sh installs:
#   - HIPRTC from Debian's ROCm packages, found by the loader (nothing to export);
#   - NVRTC and the CUDA headers from the PyPI wheels nvidia-cuda-nvrtc / nvidia-cuda-runtime,
#     which live under site-packages/nvidia/cu13/{lib,include}, a place no loader searches.
# It also sets ROCMFORGE_REQUIRE_COMPILERS=1 so that compiler tests fail instead of skipping.

_rf_site=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)
_rf_cuda="${_rf_site:+$_rf_site/nvidia/cu13}"
if [ -n "$_rf_cuda" ] && [ -f "$_rf_cuda/lib/libnvrtc.so.13" ]; then
    case ":${LD_LIBRARY_PATH:-}:" in
        *":$_rf_cuda/lib:"*) ;;
        *) export LD_LIBRARY_PATH="$_rf_cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
    esac
    export ROCMFORGE_NVRTC_LIB="$_rf_cuda/lib/libnvrtc.so.13"
    export ROCMFORGE_CUDA_INCLUDE="$_rf_cuda/include"
else
    echo "tools/ci/env.sh: NVRTC wheel not found; run tools/ci/install-compilers.sh" >&2
fi
export ROCMFORGE_REQUIRE_COMPILERS=1
unset _rf_site _rf_cuda
